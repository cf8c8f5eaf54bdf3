"""The version of the package, in a module of its own so that every other module can import it."""

__version__ = "0.1.0"
"""The version of trio_ws."""
