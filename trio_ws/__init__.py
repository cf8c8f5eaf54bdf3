"""trio_ws: WebSocket server and client for Trio (RFC 6455)."""

from __future__ import annotations

from . import testing
from .backends.cluster import RedisClusterBackend
from .backends.redis import RedisBackend
from .broadcasting import broadcast
from .client import connect
from .config import ClientConfig, ServerConfig
from .connection import WebSocket
from .counters import stats
from .exceptions import (
    CloseCode,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidRedirect,
    InvalidURI,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    WebSocketError,
)
from .extensions.permessage_deflate import DeflateConfig
from .history import HistoryLimits, Publication, StreamPosition
from .http import Headers, Request, Response
from .http2_limits import Http2Limits
from .hub import Hub, PublicationChannel, Subscription, current_hub, open_hub, presence_topic
from .hub_config import HubConfig
from .messages import Data, Message
from .options import ConnectionOptions
from .prepared import PreparedMessage
from .protocol import State
from .reconnection import Connections, default_process_exception, reconnect
from .router import Router
from .server import WebSocketServer, open_server, serve
from .version import __version__

__all__ = [
    "ClientConfig",
    "CloseCode",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "ConnectionOptions",
    "Connections",
    "Data",
    "DeflateConfig",
    "Headers",
    "Http2Limits",
    "Hub",
    "HubConfig",
    "PublicationChannel",
    "InvalidHandshake",
    "InvalidRedirect",
    "InvalidURI",
    "Message",
    "PayloadTooBig",
    "PreparedMessage",
    "Publication",
    "ProtocolError",
    "ProxyError",
    "RedisBackend",
    "RedisClusterBackend",
    "Request",
    "Response",
    "Router",
    "ServerConfig",
    "State",
    "StreamPosition",
    "HistoryLimits",
    "Subscription",
    "WebSocket",
    "WebSocketError",
    "WebSocketServer",
    "__version__",
    "broadcast",
    "connect",
    "current_hub",
    "default_process_exception",
    "open_hub",
    "presence_topic",
    "open_server",
    "reconnect",
    "serve",
    "stats",
    "testing",
]
