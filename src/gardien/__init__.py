"""Gardien: a self-hosted privacy platform driven by one processing register."""

__version__ = "0.1.0"
