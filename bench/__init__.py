"""Benchmarks that print a readable table and end with one line of JSON; never asserted in tests."""
