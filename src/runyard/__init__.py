"""Runyard: a self-hostable control plane for runs."""

__version__ = "0.1.0"
