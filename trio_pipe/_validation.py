"""Validation of every value that reaches a worker process, before any process starts.

Threat model
------------
trio_pipe starts workers in three ways, and a configuration value (possibly from a file,
an environment variable or a network peer) can reach a process in each of them:

* **local stdio processes** are started from an argv *list* (``trio.run_process`` /
  ``subprocess`` with ``shell=False``). No shell ever parses it, so shell metacharacters
  in it are harmless; only NUL (which cannot be passed through ``execve``) is refused.
* **Docker containers** are started as ``docker run -i --rm --name trio-pipe-<id>
  [--memory M] [--cpus C] [--network N] [-v VOL]... [-e K=V]... IMAGE [CMD...]``, again as
  an argv list, but the values meet docker's *option parser*: an image or network that
  starts with ``-`` would be read as an option (``--privileged``), a volume spec with a
  ``,`` or an extra ``:`` changes meaning, and an ``..`` segment escapes a directory.
* **SSH workers** (asyncssh) send the remote command as one *string* that the remote
  user's login shell interprets. Here a ``$(...)``, a backtick or a ``;`` is code
  execution on the remote host, and a hostname or username starting with ``-`` could be
  read as an ssh option (``-oProxyCommand=...``) by any tool the value is handed to.

trio_pipe's first line of defence is structural: argv lists, never shell strings, and
quoting (``shlex.quote``) wherever a string must meet a shell. The checks here are the
second line, defence in depth: each value is held to the narrowest syntax that its field
legitimately needs, so that a mistake elsewhere does not become an injection.

Every function is pure (no I/O, no Trio) and raises :class:`InvalidSpec`, a
:class:`ValueError`, naming the field and the precise reason. Messages show at most 64
characters of the offending value, through :func:`repr`, so control characters are
visible and a hostile value cannot flood or spoof a log. Non-``str`` input where a
``str`` is needed raises :class:`InvalidSpec` too; a ``str`` subclass is copied to a plain
``str`` first, so overridden methods cannot lie to the checks.

All character classes are spelled out in ASCII (never ``\\w``, ``\\d``, ``str.isalnum`` or
case-insensitive matching, all of which admit Unicode lookalikes).
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from decimal import Context, Decimal
from typing import Final

from ._errors import InvalidSpec
from .protocol import validate_worker_id as _protocol_validate_worker_id

__all__ = [
    "derive_worker_id",
    "InvalidSpec",
    "SHELL_METACHARACTERS",
    "validate_argv",
    "validate_cpus",
    "validate_docker_user",
    "validate_env",
    "validate_hostname",
    "validate_image",
    "validate_memory",
    "validate_network",
    "validate_path",
    "validate_remote_command",
    "validate_username",
    "validate_volume",
    "validate_worker_id",
]


# -- character sets -----------------------------------------------------------------------

#: Characters that make a shell do something other than split words.
SHELL_METACHARACTERS: Final = frozenset("`$(){};|&<>")
_QUOTES: Final = frozenset("'\"\\")
# ASCII control characters (C0 and DEL). NUL, LF and CR are the dangerous ones (NUL
# truncates at execve, LF/CR end a shell command line or forge a log line); the rest are
# refused too, as no field needs them. TAB is allowed where whitespace is.
_CONTROLS: Final = frozenset(chr(c) for c in range(0x20)) | {"\x7f"}
_CONTROLS_BUT_TAB: Final = _CONTROLS - {"\t"}

_ALNUM: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS: Final = _ALNUM | frozenset("._-")  # worker ids, usernames, networks
_IMAGE_CHARS: Final = _NAME_CHARS | frozenset("/:@")
_HOST_CHARS: Final = _ALNUM | frozenset(".-")
_IPV6_CHARS: Final = frozenset("0123456789abcdefABCDEF:.")
_ENV_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_MAX_SHOWN: Final = 64

MAX_IMAGE_LENGTH: Final = 256
MAX_HOSTNAME_LENGTH: Final = 253
MAX_LABEL_LENGTH: Final = 63
MAX_USERNAME_LENGTH: Final = 32
MAX_ENV_KEY_LENGTH: Final = 256
MAX_NETWORK_LENGTH: Final = 128
MAX_SCOPE_ID_LENGTH: Final = 64
MAX_VOLUME_LENGTH: Final = 8192
MAX_PATH_LENGTH: Final = 4096  # Linux PATH_MAX
MAX_ENV_VALUE_LENGTH: Final = 32768  # "-e K=V" stays under MAX_ARG_STRLEN (128 KiB)
MAX_REMOTE_COMMAND_LENGTH: Final = 32768
MIN_MEMORY_BYTES: Final = 6 * 1024 * 1024  # docker refuses less ("Minimum ... is 6MB")
MAX_MEMORY_BYTES: Final = 2**63 - 1  # docker keeps the limit in an int64
MAX_CPUS: Final = 1024
_CPU_PLACES: Final = 9  # docker counts nano-CPUs: more places are "too precise"


# -- helpers ------------------------------------------------------------------------------


def _show(value: object) -> str:
    """A short, escaped rendering of *value* for an error message."""
    if isinstance(value, str):
        text = str.__str__(value)
        if len(text) <= _MAX_SHOWN:
            return repr(text)
        return f"{text[:_MAX_SHOWN]!r}... ({len(text)} characters)"
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        if -(10**18) < value < 10**18:
            return int.__repr__(value)
        return f"an int of {value.bit_length()} bits"
    if isinstance(value, float):
        return float.__repr__(value)
    return f"a {type(value).__name__[:_MAX_SHOWN]}"


def _fail(field: str, reason: str, value: object) -> InvalidSpec:
    return InvalidSpec(field, reason, _show(value))


def _char(ch: str) -> str:
    """Name a character unambiguously: lookalikes get their code point."""
    if ch.isascii():
        return repr(ch)
    return f"{ch!r} (U+{ord(ch):04X})"


def _require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise _fail(field, f"must be a str, not {type(value).__name__[:_MAX_SHOWN]}", value)
    # A plain copy: a str subclass could override __contains__, __iter__, split...
    return str.__str__(value)


def _check_length(text: str, field: str, maximum: int) -> None:
    if not text:
        raise _fail(field, "must not be empty", text)
    if len(text) > maximum:
        raise _fail(field, f"is too long: {len(text)} characters, at most {maximum}", text)


def _check_allowed(text: str, field: str, allowed: frozenset[str], spelled: str) -> None:
    for index, ch in enumerate(text):
        if ch not in allowed:
            raise _fail(
                field,
                f"contains {_char(ch)} at index {index}; only {spelled} are allowed",
                text,
            )


def _check_forbidden(
    text: str, field: str, *, controls: frozenset[str], extra: frozenset[str] = frozenset()
) -> None:
    """Refuse control characters, shell metacharacters and *extra*, naming the first."""
    for index, ch in enumerate(text):
        if ch in controls:
            raise _fail(field, f"contains control character {ch!r} at index {index}", text)
        if ch in SHELL_METACHARACTERS:
            raise _fail(
                field, f"contains shell metacharacter {ch!r} at index {index}", text
            )
        if ch in extra:
            raise _fail(
                field, f"contains forbidden character {ch!r} at index {index}", text
            )


def _check_no_leading_dash(text: str, field: str, consumer: str) -> None:
    if text.startswith("-"):
        raise _fail(
            field, f"must not start with '-' (it would be read as {consumer})", text
        )


def _has_dotdot_segment(path: str) -> bool:
    # Split on both separators: a Windows-style "..\\" is refused as well.
    return ".." in path.replace("\\", "/").split("/")


# -- the validators -----------------------------------------------------------------------


def validate_worker_id(value: object, *, field: str = "worker id") -> str:
    """Return *value* if it is a worker id: 1-128 characters of ``[A-Za-z0-9._-]``
    starting with a letter or digit (the protocol's rule; it also names the docker
    container ``trio-pipe-<id>``)."""
    text = _require_str(value, field)
    try:
        return _protocol_validate_worker_id(text)
    except ValueError:
        pass
    # The protocol's message echoes the whole value: diagnose precisely instead.
    _check_length(text, field, 128)
    if text[0] not in _ALNUM:
        raise _fail(field, f"must start with a letter or digit, not {_char(text[0])}", text)
    _check_allowed(text, field, _NAME_CHARS, "[A-Za-z0-9._-]")
    raise _fail(field, "is not a valid worker id", text)  # pragma: no cover - defensive


_NOT_ID_CHARS: Final = re.compile(r"[^A-Za-z0-9._-]+")


def derive_worker_id(*parts: str) -> str:
    """A fresh worker id from *parts* (a program's or host's name...), for a worker
    whose caller gave none: each part with every run of characters outside
    ``[A-Za-z0-9._-]`` made one ``-`` and its ends stripped of ``-._`` (so the id
    starts with a letter or digit), at most 48 characters of it, the parts and 8
    random hex digits joined by ``-``. Empty parts are left out."""
    cleaned = (_NOT_ID_CHARS.sub("-", part).strip("-._")[:48] for part in parts)
    return validate_worker_id("-".join([*filter(None, cleaned), secrets.token_hex(4)]))


def validate_image(value: object, *, field: str = "image") -> str:
    """Return *value* if it is a safe docker image reference: 1-256 characters of
    ``[A-Za-z0-9._/:@-]``, no ``..``, not starting with ``-``.

    Accepts ``python:3.11-slim``, ``registry:5000/a/b:tag`` and
    ``ghcr.io/org/img@sha256:<hex>``; docker itself checks the finer grammar.
    """
    text = _require_str(value, field)
    _check_length(text, field, MAX_IMAGE_LENGTH)
    _check_no_leading_dash(text, field, "a docker option")
    _check_allowed(text, field, _IMAGE_CHARS, "[A-Za-z0-9._/:@-]")
    if ".." in text:
        raise _fail(field, "must not contain '..'", text)
    return text


def validate_hostname(value: object, *, field: str = "hostname") -> str:
    """Return *value* if it is a DNS name or an IPv4/IPv6 address literal.

    DNS names: dot-separated labels of ``[A-Za-z0-9-]``, each 1-63 characters and not
    starting or ending with ``-``, at most 253 characters in all; one trailing dot (a
    fully qualified name) is allowed. A name whose last label is all digits must be a
    valid IPv4 address (``1.2.3`` or ``01.2.3.4`` would be parsed by ``inet_aton`` as some
    other address). IPv6 literals are written without brackets; a zone (``fe80::1%eth0``)
    is allowed only if it is 1-64 characters of ``[A-Za-z0-9_.-]`` (:mod:`ipaddress`
    itself accepts any zone, including ``%$(reboot)``).
    """
    text = _require_str(value, field)
    _check_length(text, field, MAX_HOSTNAME_LENGTH)
    _check_no_leading_dash(text, field, "an ssh option")
    if ":" in text:
        return _validate_ipv6(text, field)
    _check_allowed(text, field, _HOST_CHARS, "[A-Za-z0-9.-]")
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    for label in labels:
        if not label:
            raise _fail(
                field, "has an empty label (a leading dot or two dots in a row)", text
            )
        if len(label) > MAX_LABEL_LENGTH:
            raise _fail(
                field,
                f"has a label of {len(label)} characters, at most {MAX_LABEL_LENGTH}",
                text,
            )
        if label.startswith("-") or label.endswith("-"):
            raise _fail(field, f"has a label that starts or ends with '-': {label!r}", text)
    if all(ch in "0123456789" for ch in labels[-1]):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            raise _fail(
                field, "looks like an IPv4 address but is not a valid one", text
            ) from None
    return text


def _validate_ipv6(text: str, field: str) -> str:
    address, percent, zone = text.partition("%")
    _check_allowed(address, field, _IPV6_CHARS, "hex digits, ':' and '.'")
    if percent:
        if not zone:
            raise _fail(field, "has an empty IPv6 zone after '%'", text)
        if len(zone) > MAX_SCOPE_ID_LENGTH:
            raise _fail(
                field,
                f"has an IPv6 zone longer than {MAX_SCOPE_ID_LENGTH} characters",
                text,
            )
        _check_allowed(zone, field + " zone", _NAME_CHARS, "[A-Za-z0-9_.-]")
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        raise _fail(field, "contains ':' but is not a valid IPv6 address", text) from None
    return text


def validate_username(value: object, *, field: str = "username") -> str:
    """Return *value* if it is a POSIX-portable user name: 1-32 characters of
    ``[A-Za-z0-9._-]``, not starting with ``-``."""
    text = _require_str(value, field)
    _check_length(text, field, MAX_USERNAME_LENGTH)
    _check_no_leading_dash(text, field, "an ssh option")
    _check_allowed(text, field, _NAME_CHARS, "[A-Za-z0-9._-]")
    return text


def validate_env(mapping: object, *, field: str = "env") -> dict[str, str]:
    """Return a plain ``dict`` copy of *mapping* if every entry is a safe environment
    variable.

    Keys match ``[A-Za-z_][A-Za-z0-9_]*`` (at most 256 characters). Values are ``str``
    (at most 32768 characters) without control characters other than TAB (so no NUL,
    LF or CR) and without shell metacharacters ``` ` $ ( ) { } ; | & < > ```: they reach
    ``docker run -e K=V`` and remote shells. Spaces and quotes are allowed in values;
    whatever builds a shell string from them must still quote them.
    """
    if not isinstance(mapping, Mapping):
        raise _fail(
            field, f"must be a mapping of str to str, not {type(mapping).__name__}", mapping
        )
    result: dict[str, str] = {}
    for raw_key, raw_value in mapping.items():
        key = _require_str(raw_key, f"{field} key")
        _check_length(key, f"{field} key", MAX_ENV_KEY_LENGTH)
        if not _ENV_KEY.fullmatch(key):
            raise _fail(
                f"{field} key",
                "must be a letter or '_' followed by letters, digits or '_'",
                key,
            )
        value_field = f"{field} value for {_show(key)}"
        text = _require_str(raw_value, value_field)
        if len(text) > MAX_ENV_VALUE_LENGTH:
            raise _fail(
                value_field,
                f"is too long: {len(text)} characters, at most {MAX_ENV_VALUE_LENGTH}",
                text,
            )
        _check_forbidden(text, value_field, controls=_CONTROLS_BUT_TAB)
        result[key] = text
    return result


def validate_volume(value: object, *, field: str = "volume") -> str:
    """Return *value* if it is a bind-mount spec ``HOST:CONTAINER`` or
    ``HOST:CONTAINER:ro|rw``.

    Both paths are absolute (named volumes are not supported), with no ``..`` segment;
    the spec has no control characters, shell metacharacters or ``,`` (docker's
    ``--mount`` separator).
    """
    text = _require_str(value, field)
    _check_length(text, field, MAX_VOLUME_LENGTH)
    _check_forbidden(text, field, controls=_CONTROLS, extra=frozenset(","))
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise _fail(
            field,
            f"must be HOST:CONTAINER or HOST:CONTAINER:MODE, not {len(parts)} "
            "':'-separated parts",
            text,
        )
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        raise _fail(field, f"has mode {_show(parts[2])}; expected 'ro' or 'rw'", text)
    for side, path in (("host", parts[0]), ("container", parts[1])):
        if not path.startswith("/"):
            raise _fail(field, f"{side} path {_show(path)} must be absolute", text)
        if _has_dotdot_segment(path):
            raise _fail(field, f"{side} path must not contain a '..' segment", text)
    return text


def validate_remote_command(value: object, *, field: str = "remote command") -> str:
    """Return *value* if it is safe to hand to a remote shell as a command line.

    The remote shell splits it on whitespace (spaces and TABs are fine) but must find
    nothing else to interpret: no shell metacharacters ``` ` $ ( ) { } ; | & < > ```, no
    quotes or backslash ``' " \\``, no control characters (NUL, LF, CR...). At most
    32768 characters, not empty or all whitespace.
    """
    text = _require_str(value, field)
    _check_length(text, field, MAX_REMOTE_COMMAND_LENGTH)
    if not text.strip():
        raise _fail(field, "must not be only whitespace", text)
    _check_forbidden(text, field, controls=_CONTROLS_BUT_TAB, extra=_QUOTES)
    return text


def validate_argv(argv: object, *, field: str = "argv") -> list[str]:
    """Return a ``list`` copy of *argv* if it can be exec'd locally.

    *argv* is a non-empty sequence of ``str`` (a bare ``str`` is refused: it is one
    string, not a list), none containing NUL, the first (the program) non-empty.
    Shell metacharacters, quotes and spaces are allowed: a local argv goes straight to
    ``execve`` and never meets a shell, so they are inert.
    """
    if isinstance(argv, str):
        raise _fail(field, "must be a list of strings, not one string", argv)
    if isinstance(argv, bytes | bytearray | memoryview) or not isinstance(argv, Sequence):
        raise _fail(field, f"must be a list of strings, not {type(argv).__name__}", argv)
    items: list[str] = []
    for index, item in enumerate(argv):
        item_field = f"{field}[{index}]"
        text = _require_str(item, item_field)
        position = text.find("\0")
        if position >= 0:
            raise _fail(item_field, f"contains NUL at index {position}", text)
        items.append(text)
    if not items:
        raise InvalidSpec(field, "must not be empty")
    if not items[0]:
        raise _fail(f"{field}[0]", "(the program) must not be empty", items[0])
    return items


def validate_path(value: object, *, field: str = "path") -> str:
    """Return *value* (a ``str`` or ``os.PathLike[str]``) as a ``str`` if it is
    1-4096 characters, has no NUL and no ``..`` segment (``/`` and ``\\`` both separate)."""
    if not isinstance(value, str) and isinstance(value, os.PathLike):
        try:
            value = os.fspath(value)
        except TypeError:
            raise _fail(field, "is a path-like object that gives no str", value) from None
    text = _require_str(value, field)
    _check_length(text, field, MAX_PATH_LENGTH)
    position = text.find("\0")
    if position >= 0:
        raise _fail(field, f"contains NUL at index {position}", text)
    if _has_dotdot_segment(text):
        raise _fail(field, "must not contain a '..' segment", text)
    return text


# Units spelled out in both cases: ``str.lower`` would turn the Kelvin sign into "k".
_MEMORY: Final = re.compile(r"([0-9]+)([bkmgBKMG]?)")
_MEMORY_UNITS: Final = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def validate_memory(value: object, *, field: str = "memory") -> str:
    """Return a docker ``--memory`` value for *value*: an ``int`` number of bytes, or a
    ``str`` matching ``[0-9]+[bkmg]?`` (upper-case units are accepted and lowered).

    The limit must be at least 6 MiB (docker's minimum) and fit docker's int64.
    ``int`` input comes back as its decimal digits (docker reads a bare number as bytes);
    ``str`` input comes back normalized (``"0256M"`` -> ``"256m"``).
    """
    expected = "must be an int number of bytes or a str like '256m'"
    if isinstance(value, bool):
        raise _fail(field, f"{expected}, not bool", value)
    if isinstance(value, int):
        number, unit = int(value), ""
    elif isinstance(value, str):
        text = str.__str__(value)
        if len(text) > 24:
            raise _fail(field, "is too long to be a memory size", text)
        match = _MEMORY.fullmatch(text)
        if match is None:
            raise _fail(
                field, "must be digits and an optional unit b, k, m or g ('256m')", text
            )
        number, unit = int(match[1]), match[2].lower()
    else:
        raise _fail(
            field,
            f"{expected}, not {type(value).__name__}",
            value,
        )
    size = number * _MEMORY_UNITS[unit]
    if size < MIN_MEMORY_BYTES:
        raise _fail(field, f"must be at least {MIN_MEMORY_BYTES} bytes (6 MiB)", value)
    if size > MAX_MEMORY_BYTES:
        raise _fail(field, f"must be at most {MAX_MEMORY_BYTES} bytes", value)
    return f"{number}{unit}"


_CPUS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def validate_cpus(value: object, *, field: str = "cpus") -> str:
    """Return a docker ``--cpus`` value for *value*: a positive number at most 1024 with
    at most 9 decimal places (docker counts nano-CPUs and refuses finer values).

    Accepts ``int``, finite ``float`` and decimal ``str`` (``"1.5"``); returns plain
    decimal notation (``0.5`` -> ``"0.5"``, ``2.0`` -> ``"2"``, never ``"1e-05"``).
    """
    if isinstance(value, bool):
        raise _fail(field, "must be a number, not bool", value)
    if isinstance(value, int):
        amount = Decimal(int(value))
    elif isinstance(value, float):
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise _fail(field, "must be a finite number", value)
        amount = Decimal(repr(number))  # the shortest repr, not the binary expansion
    elif isinstance(value, str):
        text = str.__str__(value)
        if len(text) > 32 or not _CPUS.fullmatch(text):
            raise _fail(field, "must be a decimal number like '1.5'", text)
        amount = Decimal(text)
    else:
        raise _fail(field, f"must be a number, not {type(value).__name__}", value)
    if amount <= 0:
        raise _fail(field, "must be positive", value)
    if amount > MAX_CPUS:
        raise _fail(field, f"must be at most {MAX_CPUS}", value)
    # Drop trailing zeros ("1.5000000000" is 1.5), with room for every digit given.
    amount = amount.normalize(Context(prec=64))
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if exponent < -_CPU_PLACES:
        raise _fail(
            field,
            f"is too precise: at most {_CPU_PLACES} decimal places (docker uses nano-CPUs)",
            value,
        )
    return format(amount, "f")


def validate_network(value: object, *, field: str = "network") -> str:
    """Return *value* if it is a docker network: ``none``, ``host``, ``bridge`` or a
    user network name of 1-128 characters of ``[A-Za-z0-9_.-]`` not starting with ``-``.

    ``container:<name>`` (sharing another container's network) is not supported.
    """
    text = _require_str(value, field)
    _check_length(text, field, MAX_NETWORK_LENGTH)
    _check_no_leading_dash(text, field, "a docker option")
    _check_allowed(text, field, _NAME_CHARS, "[A-Za-z0-9_.-]")
    return text


def validate_docker_user(value: object, *, field: str = "user") -> str:
    """Return *value* if it is a docker ``--user``: ``USER`` or ``USER:GROUP``, each a
    portable user name or a numeric id (see :func:`validate_username`)."""
    text = _require_str(value, field)
    parts = text.split(":")
    if len(parts) > 2:
        raise _fail(field, "must be USER or USER:GROUP", text)
    for part in parts:
        validate_username(part, field=field)
    return text
