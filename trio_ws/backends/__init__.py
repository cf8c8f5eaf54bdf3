"""Backends that carry a hub's publishes between processes."""

from .redis import RedisBackend

__all__ = ["RedisBackend"]
