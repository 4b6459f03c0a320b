"""Tessera's volunteer client: the host's key, the signed protocol and (later) the daemon."""

__version__ = "0.1.0"
