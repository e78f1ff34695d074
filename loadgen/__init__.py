"""easload: a load generator for Microsoft Exchange ActiveSync servers."""

__version__ = "0.1.0"
