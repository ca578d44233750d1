"""Harness of the skull generative benchmark: CLI, data, representations and runs."""

__version__ = "0.1.0"
