"""The scheduler RPC: reports in, work out; and the replica file transfers beside it."""
