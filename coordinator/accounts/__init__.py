"""Volunteers, teams, hosts and their keys, account tokens."""
