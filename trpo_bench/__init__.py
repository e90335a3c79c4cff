"""trpo-bench: a research harness for trust-region policy optimization."""

__version__ = "0.3.0"
