"""Transports: adapters that turn a connection to a worker into a WorkerChannel."""

from ._channel import ChannelClosed, Outbox, WorkerChannel
from ._stdio import LineChannel, StdioChannel
from ._websocket import WebSocketChannel, serve_websocket_workers

__all__ = [
    "ChannelClosed",
    "LineChannel",
    "Outbox",
    "StdioChannel",
    "WebSocketChannel",
    "WorkerChannel",
    "serve_websocket_workers",
]
