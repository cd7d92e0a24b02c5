"""The dispatcher's settings: one frozen, validated value, as the worker's WorkerConfig."""

from __future__ import annotations

import math
import resource
import types
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..auth import ApiAuth, Authenticator
from ..protocol import DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_JSON_DEPTH
from ._pool import PoolStats

__all__ = ["DispatcherConfig", "default_max_connections"]


def _seconds(*, zero: bool) -> Callable[[Any, attrs.Attribute[Any], float], None]:
    """A finite number of seconds, > 0 (or >= 0 if *zero* is allowed)."""
    bound = ">= 0" if zero else "> 0"

    def check(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{attribute.name} must be a number of seconds, not {value!r}")
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise ValueError(
                f"{attribute.name} must be a finite number {bound}, not {value!r}"
            )

    return check


_positive = _seconds(zero=False)
_non_negative = _seconds(zero=True)


def _count(minimum: int) -> Callable[[Any, attrs.Attribute[Any], int], None]:
    def check(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{attribute.name} must be an int, not {value!r}")
        if value < minimum:
            raise ValueError(f"{attribute.name} must be >= {minimum}, not {value!r}")

    return check


def _optional_count(_: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None:
        _count(1)(_, attribute, value)


def _authenticator(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(getattr(value, "authenticate", None)):
        raise TypeError(
            f"auth must be a TokenAuth, a CertificateAuth or another Authenticator, "
            f"not {value!r}"
        )


def _lifetimes(value: Mapping[str, float]) -> Mapping[str, float]:
    """A read-only copy of *value*: task type -> seconds, each checked."""
    if not isinstance(value, Mapping):
        raise TypeError(
            f"max_lifetime_by_type must be a mapping of task type to seconds, not {value!r}"
        )
    for task_type, seconds in value.items():
        if not isinstance(task_type, str) or not task_type:
            raise TypeError(f"max_lifetime_by_type: bad task type {task_type!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(
                f"max_lifetime_by_type[{task_type!r}] must be a number of seconds, "
                f"not {seconds!r}"
            )
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(
                f"max_lifetime_by_type[{task_type!r}] must be a finite number > 0, "
                f"not {seconds!r}"
            )
    return types.MappingProxyType(dict(value))


def _http_address(
    _: Any, attribute: attrs.Attribute[Any], value: tuple[str, int] | None
) -> None:
    if value is None:
        return
    if not (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and value[0]
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
        and 0 <= value[1] < 65536
    ):
        raise ValueError(
            f"http must be a (host, port) tuple with a port from 0 to 65535, not {value!r}"
        )


def default_max_connections() -> int:
    """Three quarters of this process's file-descriptor limit (``RLIMIT_NOFILE``, soft),
    at most 100,000: the rest stays for the application's own files and sockets."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 100_000
    return max(1, min(soft * 3 // 4, 100_000))


@attrs.frozen(kw_only=True)
class DispatcherConfig:
    """Every setting of a dispatcher; times are in seconds.

    ``open_dispatcher`` takes each as a keyword argument and builds this; an invalid
    value raises ``TypeError`` or ``ValueError`` naming the setting, before anything
    starts.
    """

    #: A worker that sends nothing (no heartbeat, no message) for this long is dead.
    heartbeat_timeout: float = attrs.field(default=15.0, validator=_positive)
    #: A WebSocket worker must send ``WorkerRegister`` within this after connecting.
    registration_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: A write to a worker that takes longer than this ends its session.
    send_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: How long closing one connection (the close handshake) may take.
    close_timeout: float = attrs.field(default=2.0, validator=_positive)
    #: How long in-flight tasks have to finish when the dispatcher closes gracefully.
    shutdown_grace: float = attrs.field(default=10.0, validator=_non_negative)
    #: The most tasks waiting for a worker; ``submit`` waits beyond that.
    max_queued: int = attrs.field(default=100_000, validator=_count(0))
    #: Each priority level is worth this many seconds of waiting (against starvation).
    aging_interval: float = attrs.field(default=10.0, validator=_non_negative)
    #: The first retry's backoff ceiling; it doubles per retry, up to the maximum.
    retry_backoff: float = attrs.field(default=0.1, validator=_non_negative)
    retry_backoff_max: float = attrs.field(default=10.0, validator=_non_negative)
    #: The most connected workers (``None``: no limit); more are refused.
    max_pool_size: int | None = attrs.field(default=None, validator=_optional_count)
    #: Below this many active workers, ``on_below_minimum`` is called with the stats.
    min_pool_size: int = attrs.field(default=0, validator=_count(0))
    on_below_minimum: Callable[[PoolStats], object] | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.is_callable())
    )
    #: The largest frame accepted from a worker, in bytes.
    max_frame_size: int = attrs.field(default=DEFAULT_MAX_FRAME_SIZE, validator=_count(1))
    #: Task type -> the longest a task of that type may live, in seconds from its
    #: submission, by extending its deadline (``extendMs``); other types cannot.
    max_lifetime_by_type: Mapping[str, float] = attrs.field(
        factory=dict, converter=_lifetimes, hash=False
    )
    #: Checks each WebSocket worker's credentials in the opening handshake
    #: (:class:`~trio_pipe.auth.TokenAuth`, :class:`~trio_pipe.auth.CertificateAuth`);
    #: ``None``: none are asked for.
    auth: Authenticator | None = attrs.field(default=None, validator=_authenticator)
    #: Listen beyond loopback without ``auth`` (logged as a warning at every start).
    insecure: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool)
    )
    #: How often live sessions' credentials are checked for expiry and revocation.
    credentials_check_interval: float = attrs.field(default=1.0, validator=_positive)

    # -- the HTTP API (docs/http.md) ----------------------------------------------

    #: Where to serve the HTTP API and ``/metrics``: ``(host, port)``, port 0 for a
    #: free one; ``None``: nowhere. Needs the ``http`` extra.
    http: tuple[str, int] | None = attrs.field(default=None, validator=_http_address)
    #: Checks the API's bearer tokens (:class:`~trio_pipe.auth.ApiAuth`); ``None``:
    #: none are asked for, and the API is served on loopback only.
    http_auth: ApiAuth | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(ApiAuth)),
    )
    #: Serve the API beyond loopback without ``http_auth`` (logged as a warning).
    http_insecure: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool)
    )

    # -- limits at the edge (docs/limits.md) -------------------------------------

    #: A WebSocket client must complete its opening handshake within this.
    handshake_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: The most WebSocket connections at once; more are closed as soon as accepted.
    max_connections: int = attrs.field(factory=default_max_connections, validator=_count(1))
    #: The most connections still in their handshake or not yet registered; a new one
    #: beyond that sheds the oldest of them.
    max_unregistered: int = attrs.field(default=128, validator=_count(1))
    #: The deepest nesting of arrays and objects in a frame from a worker.
    max_json_depth: int = attrs.field(
        default=DEFAULT_MAX_JSON_DEPTH, validator=[_count(2), attrs.validators.le(1024)]
    )
    #: The most task types, and tags, one registration may declare.
    max_task_types: int = attrs.field(default=1024, validator=_count(1))
    max_tags: int = attrs.field(default=64, validator=_count(0))
    #: The longest task type or tag, in characters.
    max_name_length: int = attrs.field(default=256, validator=_count(1))
    #: The highest ``maxConcurrency`` (and per-type limit) a registration may declare.
    max_worker_concurrency: int = attrs.field(default=10_000, validator=_count(1))
    #: Frames queued for one worker and not yet written, in characters; beyond that
    #: the worker (which does not read) is disconnected.
    max_outbox_size: int = attrs.field(default=64 * 1024 * 1024, validator=_count(1))
    #: A worker whose tasks time out this many times in a row is drained (``None``:
    #: never); those tasks are retried elsewhere, within their ``maxRetries``.
    max_consecutive_timeouts: int | None = attrs.field(default=3, validator=_optional_count)
