"""Quorum validation, credit, reputation, adaptive replication and the credit ledger."""
