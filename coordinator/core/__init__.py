"""Cross-cutting pieces: domain errors and their HTTP mapping, the embedded runtime."""
