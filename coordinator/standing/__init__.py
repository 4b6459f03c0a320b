"""Credit totals, reputation and quotas: what a volunteer's and a host's results earned."""
