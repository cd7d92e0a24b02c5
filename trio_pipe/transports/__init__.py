"""Transports: adapters that turn a connection into a :class:`FrameChannel`, the same on
the dispatcher's side and a worker's."""

from ._channel import ChannelClosed, FrameChannel, InputClosed, Outbox, write_batches
from ._stdio import LineChannel, StdioChannel
from ._websocket import WebSocketChannel, connect_websocket, serve_websocket_workers

__all__ = [
    "ChannelClosed",
    "FrameChannel",
    "InputClosed",
    "LineChannel",
    "Outbox",
    "StdioChannel",
    "WebSocketChannel",
    "connect_websocket",
    "serve_websocket_workers",
    "write_batches",
]
