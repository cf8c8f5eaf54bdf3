"""Backends that carry a hub's publishes between processes."""

from .cluster import RedisClusterBackend
from .redis import RedisBackend

__all__ = ["RedisBackend", "RedisClusterBackend"]
