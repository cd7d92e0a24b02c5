"""The dispatcher's HTTP API: an ASGI application (Starlette) served by Hypercorn's
Trio worker inside the dispatcher's nursery tree (``open_dispatcher(http=...)``).
Needs the ``http`` extra: ``pip install 'trio-pipe[http]'`` (docs/http.md).
"""

from ..auth import ApiAuth, ApiClaims, ApiScope
from ._app import ApiError, create_app
from ._metrics import DispatcherMetrics
from ._openapi import openapi_document
from ._serve import serve_http

__all__ = [
    "ApiAuth",
    "ApiClaims",
    "ApiError",
    "ApiScope",
    "DispatcherMetrics",
    "create_app",
    "openapi_document",
    "serve_http",
]
