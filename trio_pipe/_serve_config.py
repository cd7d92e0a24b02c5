"""The configuration file of ``trio-pipe serve`` (docs/serve.md): TOML, read with the
standard library's :mod:`tomllib`, checked key by key.

Every error names the key and the line it is on (``trio-pipe.toml:12: http.listen:
expected HOST:PORT, got 'localhost'``). :mod:`tomllib` gives values, not positions, so
:func:`key_lines` finds where each key is written with a small scan of the text: table
headers, arrays of tables and ``key = value`` lines (dotted and quoted keys included),
skipping what is inside strings and multi-line arrays. A key it cannot place (one
written inside an inline table, say) is reported at the line of the nearest enclosing
key or table it can.

The settings of the ``[dispatcher]`` and ``[limits]`` tables are the fields of
:class:`~trio_pipe.dispatch.DispatcherConfig`, checked by it, one at a time, so that
their defaults and rules live in one place.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import ssl
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from ._errors import InvalidSpec, describe
from .auth import ApiAuth, TokenAuth
from .dispatch import Dispatcher, DispatcherConfig, Restart, RestartPolicy
from .store import Retention, Store, store_from_url
from .transports._spawn import docker_spec, stdio_spec

__all__ = ["ConfigError", "ServeConfig", "SpawnedWorker", "key_lines", "load_config"]

KeyPath = tuple[str | int, ...]
_Auth = TypeVar("_Auth", TokenAuth, ApiAuth)


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file, the line
    and the key, and says what to change."""

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        super().__init__(f"{_located(file, line, key)}: {message}")
        self.file = file
        self.line = line
        self.key = key


def _located(file: str, line: int | None, key: str) -> str:
    """``file:line: key``, leaving out what is not known."""
    where = f"{file}:{line}" if line is not None else file
    return f"{where}: {key}" if key else where


# -- where each key is written ---------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(text: str, start: int) -> tuple[list[str], int] | None:
    """The parts of the (dotted, perhaps quoted) key at *text[start:]* and the index
    just after it, or ``None`` if there is no key there."""
    parts: list[str] = []
    i = start
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] in "\"'":
            quote = text[i]
            end = i + 1
            while end < len(text) and text[end] != quote:
                end += 2 if quote == '"' and text[end] == "\\" else 1
            if end >= len(text):
                return None
            parts.append(_unquoted(text[i + 1 : end], quote))
            i = end + 1
        else:
            match = _BARE_KEY.match(text, i)
            if match is None:
                return None
            parts.append(match[0])
            i = match.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        return parts, i


def _unquoted(raw: str, quote: str) -> str:
    """The key written as *raw* between *quote* s: a literal key as it is, a basic
    one with its escapes resolved (as JSON's, which TOML's are but ``\\U``)."""
    if quote == "'":
        return raw
    try:
        text: str = json.loads(f'"{raw}"')
    except ValueError:
        return raw
    return text


class _ValueScanner:
    """What a value leaves open at the end of its line: a multi-line string, or
    brackets (an array or inline table spanning lines)."""

    def __init__(self) -> None:
        self.depth = 0
        self.multiline: str | None = None  # '"""' or "'''" while inside one

    @property
    def open(self) -> bool:
        return self.depth > 0 or self.multiline is not None

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            if self.multiline is not None:
                end = text.find(self.multiline, i)
                if end < 0:
                    return
                self.multiline = None
                i = end + 3
                continue
            char = text[i]
            if text.startswith(('"""', "'''"), i):
                self.multiline = text[i : i + 3]
                i += 3
            elif char in "\"'":
                i += 1
                while i < len(text) and text[i] != char:
                    i += 2 if char == '"' and text[i] == "\\" else 1
                i += 1
            elif char == "#":
                return
            else:
                self.depth += (char in "[{") - (char in "]}")
                i += 1


def key_lines(text: str) -> dict[KeyPath, int]:
    """The line (from 1) where each table and key of the TOML document *text* is
    first written, by its path: ``("http", "listen")``; an element of an array of
    tables is ``("spawn", 0)``. Keys written inside inline tables or multi-line
    values are not listed (:func:`line_of` falls back to the enclosing key)."""
    lines: dict[KeyPath, int] = {}
    table: KeyPath = ()
    counts: dict[KeyPath, int] = {}
    value = _ValueScanner()
    for number, line in enumerate(text.splitlines(), start=1):
        if value.open:
            value.feed(line)
            continue
        stripped = line.lstrip()
        if stripped.startswith("[["):
            parsed = _parse_key(stripped, 2)
            if parsed is not None:
                path = tuple(parsed[0])
                index = counts.get(path, 0)
                counts[path] = index + 1
                table = (*path, index)
                lines.setdefault(path, number)
                lines.setdefault(table, number)
        elif stripped.startswith("["):
            parsed = _parse_key(stripped, 1)
            if parsed is not None:
                table = _resolve(tuple(parsed[0]), counts)
                lines.setdefault(table, number)
        elif stripped and not stripped.startswith("#"):
            parsed = _parse_key(stripped, 0)
            if parsed is None or not stripped[parsed[1] :].startswith("="):
                continue
            lines.setdefault((*table, *parsed[0]), number)
            value.feed(stripped[parsed[1] + 1 :])
    return lines


def _resolve(path: tuple[str, ...], counts: Mapping[KeyPath, int]) -> KeyPath:
    """*path* with the latest element of each array of tables along it: in
    ``[spawn.restart]`` after a second ``[[spawn]]``, ``("spawn", 1, "restart")``."""
    resolved: KeyPath = ()
    for part in path:
        resolved = (*resolved, part)
        if resolved in counts:
            resolved = (*resolved, counts[resolved] - 1)
    return resolved


def line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int | None:
    """The line of *path*, or of the nearest enclosing key or table that has one."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def dotted(path: KeyPath) -> str:
    """``spawn[0].restart.mode``: a key path as the messages write it."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


# -- reading tables ------------------------------------------------------------------


class _Table:
    """A table of the document being read: typed getters that report a wrong value
    against its key and line, and :meth:`finish`, which refuses keys nobody read."""

    def __init__(self, source: _Source, path: KeyPath, values: Mapping[str, Any]) -> None:
        self.source = source
        self.path = path
        self.values = values
        self._read: set[str] = set()

    def error(self, key: str | int | None, message: str) -> ConfigError:
        path = self.path if key is None else (*self.path, key)
        return self.source.error(path, message)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, check: Callable[[Any], Any], default: Any = None) -> Any:
        """The value of *key* passed through *check* (which raises ``ValueError`` or
        ``TypeError`` with what is wrong), or *default* when it is absent."""
        self._read.add(key)
        if key not in self.values:
            return default
        try:
            return check(self.values[key])
        except (TypeError, ValueError) as exc:
            raise self.error(key, str(exc)) from None

    def require(self, key: str, check: Callable[[Any], Any]) -> Any:
        if key not in self.values:
            self._read.add(key)
            raise self.error(None, f"missing key {key!r}")
        return self.get(key, check)

    def table(self, key: str) -> _Table:
        """The sub-table *key* (empty if absent)."""
        values = self.get(key, _mapping, {})
        return _Table(self.source, (*self.path, key), values)

    def tables(self, key: str) -> Iterator[_Table]:
        """The elements of the array of tables *key* (``[[key]]``)."""
        for index, values in enumerate(self.get(key, _array_of_tables, [])):
            yield _Table(self.source, (*self.path, key, index), values)

    def finish(self) -> None:
        for key in self.values:
            if key not in self._read:
                known = ", ".join(sorted(self._read))
                raise self.error(key, f"unknown key (known here: {known})")


@attrs.frozen
class _Source:
    file: str
    lines: Mapping[KeyPath, int]

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(self.file, line_of(self.lines, path), dotted(path), message)

    def located(self, path: KeyPath) -> str:
        return _located(self.file, line_of(self.lines, path), dotted(path))


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a table, got {_kind(value)}")
    return value


def _array_of_tables(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise TypeError(f"expected an array of tables ([[...]]), got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names.update({list: "an array", dict: "a table"})
    return names.get(type(value), type(value).__name__)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_kind(value)}")
    if not value:
        raise ValueError("must not be empty")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_kind(value)}")
    return value


def _integer(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {_kind(value)}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return check


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {_kind(value)}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a finite number >= 0, got {value}")
    return float(value)


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"expected an array of strings, got {_kind(value)}")
    return value


def _string_or_strings(value: Any) -> str | list[str]:
    return value if isinstance(value, str) else _strings(value)


def _string_table(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError(f"expected a table of strings, got {_kind(value)}")
    return value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: Any) -> float:
    """A duration: a number of seconds, or a string such as ``"500ms"``, ``"30s"``,
    ``"15m"``, ``"12h"``, ``"7d"``."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(
                f"expected seconds or a duration such as 500ms, 30s, 15m, 12h or 7d, "
                f"got {value!r}"
            )
        return float(match[1]) * _UNITS[match[2]]
    return _number(value)


def _kept(value: Any) -> float | None:
    """A retention: a duration, or ``false`` to keep until purged."""
    if value is False:
        return None
    return _seconds(value)


def _address(value: Any) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6); port 0 picks a free one."""
    text = _string(value)
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(
            f"expected HOST:PORT with a port from 0 to 65535 ([::1]:PORT for IPv6), "
            f"got {text!r}"
        )
    return host, int(port)


def _memory(value: Any) -> int | str:
    """Docker's ``--memory``: bytes, or a string such as ``"512m"``."""
    return value if isinstance(value, str) else _integer(1)(value)


def _readable_file(value: Any) -> Path:
    path = Path(_string(value))
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


# -- the configuration ---------------------------------------------------------------

_ABSENT: Any = object()  # what a getter returns for a key that is not there


@attrs.frozen
class SpawnedWorker:
    """A ``[[spawn]]`` entry: which ``Dispatcher.spawn_*`` method to call, with
    what; ``where`` (``file:line: spawn[N]``) prefixes what starting it raises."""

    kind: str
    options: Mapping[str, Any]
    count: int
    where: str


@attrs.frozen
class ServeConfig:
    """What ``trio-pipe serve`` runs: ``open_dispatcher``'s keyword arguments, the
    store, and the workers to spawn."""

    dispatcher: Mapping[str, Any]
    store: Store
    spawn: tuple[SpawnedWorker, ...]


_DISPATCHER_KEYS = (
    "heartbeat_timeout", "registration_timeout", "send_timeout", "close_timeout",
    "shutdown_grace", "max_queued", "aging_interval", "retry_backoff",
    "retry_backoff_max", "max_pool_size", "min_pool_size", "max_lifetime_by_type",
    "credentials_check_interval",
)  # fmt: skip
#: The settings of docs/limits.md.
_LIMIT_KEYS = (
    "handshake_timeout", "max_connections", "max_unregistered", "max_frame_size",
    "max_json_depth", "max_task_types", "max_tags", "max_name_length",
    "max_worker_concurrency", "max_outbox_size", "max_consecutive_timeouts",
)  # fmt: skip
_FIELDS = attrs.fields_dict(DispatcherConfig)


def _setting(name: str) -> Callable[[Any], Any]:
    """A checker of one DispatcherConfig field: durations may be written as strings,
    ``max_consecutive_timeouts = false`` turns that check off, and the rest is
    DispatcherConfig's own validation."""

    def check(value: Any) -> Any:
        if name == "max_lifetime_by_type" and isinstance(value, dict):
            value = {task_type: _seconds(v) for task_type, v in value.items()}
        elif name == "max_consecutive_timeouts" and value is False:
            value = None
        elif isinstance(value, str) and "float" in str(_FIELDS[name].type):
            value = _seconds(value)
        config = DispatcherConfig(**{name: value})
        return getattr(config, name)

    return check


def _server_tls(table: _Table) -> ssl.SSLContext | None:
    """``[workers.tls]``: the certificate the worker port presents, and the CA whose
    client certificates it requires, if any (mutual TLS)."""
    if not table.values:
        return None
    certfile = table.require("certfile", _readable_file)
    keyfile = table.get("keyfile", _readable_file)
    client_cafile = table.get("client_cafile", _readable_file)
    table.finish()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise table.error("certfile", f"cannot load it: {describe(exc)}") from None
    if client_cafile is not None:
        try:
            context.load_verify_locations(client_cafile)
        except (OSError, ssl.SSLError) as exc:
            raise table.error("client_cafile", f"cannot load it: {describe(exc)}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _token_auth(table: _Table, kind: type[_Auth]) -> _Auth | None:
    """``[workers.auth]`` or ``[http.auth]``: a secret file and a revocation file."""
    if not table.values:
        return None
    secret_file = table.require("secret_file", _readable_file)
    revocations = table.get("revocations", _string)
    table.finish()
    try:
        return kind.from_file(secret_file, revocations=revocations)
    except (OSError, ValueError) as exc:
        raise table.error("secret_file", str(exc)) from None


def _store(table: _Table) -> Store:
    url = table.get("url", _string, "memory://")
    completed = table.get("retention_completed", _kept, Retention.completed)
    failed = table.get("retention_failed", _kept, Retention.failed)
    table.finish()
    try:
        store = store_from_url(url)
    except ValueError as exc:
        raise table.error("url", str(exc)) from None
    if not hasattr(store, "retention"):
        raise table.error("url", f"a {type(store).__name__} takes no retention settings")
    # Every store that prunes reads its (public) retention attribute as it runs.
    store.retention = Retention(completed=completed, failed=failed)
    return store


def _restart(table: _Table) -> RestartPolicy:
    def mode(value: Any) -> Restart:
        names = ", ".join(member.value for member in Restart)
        try:
            return Restart(_string(value))
        except ValueError:
            raise ValueError(f"expected one of {names}, got {value!r}") from None

    default = RestartPolicy()
    policy = RestartPolicy(
        mode=table.get("mode", mode, default.mode),
        max_restarts=table.get("max_restarts", _integer(0), default.max_restarts),
        window=table.get("window", _seconds, default.window),
        backoff=table.get("backoff", _seconds, default.backoff),
        backoff_max=table.get("backoff_max", _seconds, default.backoff_max),
    )
    table.finish()
    return policy


_COMMON = {
    "worker_id": _string,
    "max_concurrency": _integer(1),
    "tags": _strings,
}
_PROCESS = {**_COMMON, "env": _string_table, "stop_grace": _seconds}
#: The keys of each kind of ``[[spawn]]``: the keywords of ``Dispatcher.spawn_<kind>``
#: (``module`` is spawn_wasm's *module_path*); ``restart`` is a table of its own.
_SPAWN_KEYS: Mapping[str, tuple[tuple[str, ...], Mapping[str, Callable[[Any], Any]]]] = {
    "stdio": (("argv",), {**_PROCESS, "argv": _strings, "cwd": _string}),
    "docker": (
        ("image",),
        {
            **_PROCESS,
            "image": _string,
            "command": _strings,
            "volumes": _strings,
            "network": _string,
            "memory": _memory,
            "cpus": _number,
            "read_only": _boolean,
            "user": _string,
            "docker": _string,
        },
    ),
    "ssh": (
        ("host", "user", "command", "known_hosts", "client_keys"),
        {
            **_PROCESS,
            "host": _string,
            "user": _string,
            "port": _integer(1),
            "command": _string_or_strings,
            "known_hosts": lambda value: str(_readable_file(value)),
            "client_keys": _string_or_strings,
            "connect_timeout": _seconds,
            "keepalive_interval": _seconds,
            "keepalive_count_max": _integer(1),
        },
    ),
    "wasm": (
        ("module",),
        {
            **_COMMON,
            "module": _string,
            "max_memory_bytes": _integer(1),
            "timeout_ms": _integer(1),
            "fuel": _integer(1),
            "env_allow": _strings,
            "preopen_dirs": _string_table,
            "preopen_writable": _boolean,
            "cache_dir": _string,
        },
    ),
}


def _spawned(table: _Table) -> SpawnedWorker:
    kinds = ", ".join(_SPAWN_KEYS)

    def kind_of(value: Any) -> str:
        if value not in _SPAWN_KEYS:
            raise ValueError(f"expected one of {kinds}, got {value!r}")
        return str(value)

    kind = table.require("kind", kind_of)
    required, checks = _SPAWN_KEYS[kind]
    options: dict[str, Any] = {"tasks": table.require("tasks", _strings)}
    for key in required:
        options[key] = table.require(key, checks[key])
    for key, check in checks.items():
        value = table.get(key, check, _ABSENT)
        if value is not _ABSENT and key not in required:
            options[key] = value
    count = table.get("count", _integer(1), 1)
    if count > 1 and "worker_id" in options:
        raise table.error("count", "several copies cannot share one worker_id")
    if kind != "wasm":
        options["restart"] = _restart(table.table("restart"))
    table.finish()
    if not options["tasks"]:
        raise table.error("tasks", "name at least one task type")
    # What can be checked without starting anything is checked now.
    try:
        _check_spec(kind, options)
    except InvalidSpec as exc:
        name = re.split(r"[\[ ]", exc.field, maxsplit=1)[0]
        raise table.error(name if name in options else "kind", str(exc)) from None
    return SpawnedWorker(kind, options, count, table.source.located(table.path))


def _check_spec(kind: str, options: Mapping[str, Any]) -> None:
    """Build the process spec of a stdio or Docker worker, as ``spawn_<kind>`` would,
    for its checks (``InvalidSpec``); the other kinds are checked as they start."""
    builders: dict[str, Callable[..., object]] = {
        "stdio": stdio_spec,
        "docker": docker_spec,
    }
    builder = builders.get(kind)
    if builder is None:
        return
    spawn = inspect.signature(getattr(Dispatcher, f"spawn_{kind}")).parameters
    builder(**{
        name: options.get(name, spawn[name].default)
        for name in inspect.signature(builder).parameters
    })  # fmt: skip


def load_config(path: str | Path) -> ServeConfig:
    """Read and check the configuration file at *path*. Raises :class:`ConfigError`
    (a ``ValueError``) naming the key and line of the first problem found."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, None, "", f"cannot read it: {describe(exc)}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)$", str(exc))
        line = int(match[1]) if match else None
        message = str(exc)[: match.start()].strip() if match else str(exc)
        raise ConfigError(file, line, "", f"not valid TOML: {message}") from None
    source = _Source(file, key_lines(text))
    root = _Table(source, (), document)
    options: dict[str, Any] = {}

    for section, keys in (("dispatcher", _DISPATCHER_KEYS), ("limits", _LIMIT_KEYS)):
        table = root.table(section)
        for key in keys:
            value = table.get(key, _setting(key), _ABSENT)
            if value is not _ABSENT:
                options[key] = value
        table.finish()

    workers = root.table("workers")
    listen = workers.get("listen", lambda v: v if v is False else _address(v))
    if listen is False:
        options["port"] = None  # spawned workers only
    elif listen is not None:
        options["host"], options["port"] = listen
    else:
        options["host"], options["port"] = "127.0.0.1", 9876
    options["insecure"] = workers.get("insecure", _boolean, False)
    options["ssl_context"] = _server_tls(workers.table("tls"))
    options["auth"] = _token_auth(workers.table("auth"), TokenAuth)
    workers.finish()

    http = root.table("http")
    if "listen" in http:
        options["http"] = http.get("listen", _address)
        options["http_insecure"] = http.get("insecure", _boolean, False)
        options["http_auth"] = _token_auth(http.table("auth"), ApiAuth)
    elif http.values:
        raise http.error(None, "give listen = HOST:PORT to serve the HTTP API")
    http.finish()

    store = _store(root.table("store"))
    spawn = tuple(_spawned(table) for table in root.tables("spawn"))
    root.finish()
    return ServeConfig(options, store, spawn)
