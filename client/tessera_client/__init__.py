"""Tessera's volunteer client: the `tessera` command, its daemon, and the signed protocol."""

__version__ = "0.2.0"
