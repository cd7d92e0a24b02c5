"""Who may attach as a worker, and what it may do: worker tokens and certificates.

A WebSocket worker proves who it is in the opening handshake, before the dispatcher
reads any protocol message: with a **token** (``Authorization: Bearer <token>``,
checked by :class:`TokenAuth`) or with a **client certificate** (mutual TLS, mapped by
:class:`CertificateAuth`). Either gives the connection its :class:`Claims`: the worker
ids it may register under, the task types and tags it may claim, and when they end.
A handshake without valid credentials is answered with HTTP 401 (403 for valid
credentials that may not connect) and never reaches registration; a registration
outside its claims is refused with close code 1008 (docs/security.md).

Tokens are JSON Web Tokens signed with HMAC-SHA256 under a secret only the dispatcher
(and whoever mints tokens) holds; PyJWT signs and verifies them. A token names its
claims and carries an id (``jti``), which can be revoked without a restart: the
dispatcher re-reads the revocation file when it changes, refuses new handshakes with
a revoked token, and closes the sessions that hold one. Spawned workers (stdio,
Docker, SSH, WASM) need none of this: the dispatcher started them itself.

Nothing here does I/O but reading the revocation file (a ``stat`` per check, a read
when it changed): the handshake calls :meth:`Authenticator.authenticate` directly.
"""

from __future__ import annotations

import enum
import fnmatch
import glob
import os
import secrets
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol, Self

import attrs
import jwt

from ._errors import AuthenticationFailed
from .protocol import WorkerRegistration

__all__ = [
    "ApiAuth",
    "ApiClaims",
    "ApiScope",
    "AuthenticationFailed",
    "Authenticator",
    "CertificateAuth",
    "Claims",
    "TokenAuth",
    "new_secret",
    "revoke",
]

#: Who a worker token is for: a token minted for something else under the same secret
#: is refused.
AUDIENCE: Final = "trio-pipe-worker"
#: Who an HTTP API token is for (:class:`ApiAuth`): neither kind is accepted as the other.
API_AUDIENCE: Final = "trio-pipe-api"
_ALGORITHM: Final = "HS256"
_MIN_SECRET_BYTES: Final = 32  # RFC 7518 3.2: a key at least as long as the hash


@attrs.frozen
class Claims:
    """What one authenticated connection may do.

    - *worker_id*: a pattern (``fnmatch``: ``*``, ``?``, ``[...]``) the registration's
      ``workerId`` must match; ``"*"``, any id.
    - *task_types*, *tags*: the task types and tags it may claim; ``None``, any.
    - *token_id*: the credential's id (a token's ``jti``): a reconnect with the same id
      replaces a stale session of the same worker id instead of being refused.
    - *expires_at*: when the credential ends (Unix time); ``None``, never. A session
      still open then is closed.
    """

    worker_id: str = "*"
    task_types: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    token_id: str | None = None
    expires_at: float | None = None

    def refusal(self, registration: WorkerRegistration) -> str | None:
        """Why *registration* is outside these claims, or ``None`` if it is not."""
        if not fnmatch.fnmatchcase(registration.worker_id, self.worker_id):
            return (
                f"worker id {registration.worker_id!r} does not match "
                f"{self.worker_id!r}, the pattern its credentials allow"
            )
        for kind, claimed, allowed in (
            ("task type", registration.supported_tasks, self.task_types),
            ("tag", registration.tags, self.tags),
        ):
            if allowed is None:
                continue
            outside = sorted(set(claimed).difference(allowed))
            if outside:
                listed = ", ".join(repr(x) for x in outside[:5])
                more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
                return f"{kind} {listed}{more} not allowed by its credentials"
        return None

    def ended(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class Authenticator(Protocol):
    """Checks a WebSocket worker's opening handshake (``open_dispatcher(auth=...)``)."""

    def authenticate(
        self, headers: Mapping[str, str], certificate: dict[str, Any] | None
    ) -> Claims:
        """The claims of the connection whose upgrade request has *headers* (names
        in any case) and whose TLS client certificate is *certificate* (as
        :meth:`ssl.SSLSocket.getpeercert` gives it; ``None`` without one). Raises
        :class:`AuthenticationFailed`."""
        ...

    def revoked(self, claims: Claims) -> bool:
        """Whether credentials accepted earlier have been revoked since."""
        ...


class _Revocations:
    """The token ids listed in a file (one per line; ``#`` starts a comment), read
    again whenever the file changes. A missing file revokes nothing."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int, int] | None = None
        self._ids: frozenset[str] = frozenset()

    def __contains__(self, token_id: str) -> bool:
        try:
            stat = self.path.stat()
            seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            seen = None
        if seen != self._seen:
            self._ids = frozenset(_token_ids(self.path)) if seen else frozenset()
            self._seen = seen
        return token_id in self._ids


def _token_ids(path: Path) -> Iterable[str]:
    for line in path.read_text(encoding="utf-8").splitlines():
        token_id = line.split("#", 1)[0].strip()
        if token_id:
            yield token_id


class _SignedTokens:
    """What worker and API tokens share: JWTs signed with HMAC-SHA256 under a secret,
    for one audience, each with an id that a revocation file may list."""

    _audience: ClassVar[str]

    def __init__(
        self,
        secret: str | bytes,
        *,
        revocations: str | os.PathLike[str] | None = None,
        leeway: float = 5.0,
    ) -> None:
        self._key = _secret_key(secret)
        self._revocations = None if revocations is None else _Revocations(revocations)
        self.leeway = leeway

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> Self:
        """The secret is the file's content, surrounding whitespace stripped."""
        return cls(Path(path).read_text(encoding="utf-8").strip(), **options)

    def _sign(
        self,
        subject: str,
        expires_in: float,
        token_id: str | None,
        now: float | None,
        claims: Mapping[str, Any],
    ) -> str:
        if expires_in <= 0:
            raise ValueError("expires_in must be > 0")
        issued = time.time() if now is None else now
        payload = {
            "aud": self._audience,
            "iat": int(issued),
            "exp": int(issued + expires_in),
            "jti": token_id or uuid.uuid4().hex,
            "sub": subject,
            **claims,
        }
        return jwt.encode(payload, self._key, algorithm=_ALGORITHM)

    def _verify(self, headers: Mapping[str, str], kind: str) -> dict[str, Any]:
        """The claims of the bearer token in *headers* (*kind* names it in the
        refusal when there is none). Raises :class:`AuthenticationFailed`."""
        token = _bearer_token(headers, kind)
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=self._audience,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "jti", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"invalid token: {exc}") from None
        return payload

    def _is_revoked(self, token_id: str | None) -> bool:
        return (
            self._revocations is not None
            and token_id is not None
            and token_id in self._revocations
        )


class TokenAuth(_SignedTokens):
    """Worker tokens: JWTs signed with HMAC-SHA256 under *secret* (at least 32
    bytes; :func:`new_secret` makes one), revocable through *revocations*, a file of
    token ids (:func:`revoke` appends one; the dispatcher notices without a restart).

    ``TokenAuth.from_file(path)`` reads the secret from a file, as
    ``trio-pipe token create --secret-file`` does.
    """

    _audience = AUDIENCE

    def create(
        self,
        *,
        expires_in: float,
        task_types: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        worker_id: str = "*",
        token_id: str | None = None,
        now: float | None = None,
    ) -> str:
        """A token for these claims, valid for *expires_in* seconds from *now*."""
        claims: dict[str, Any] = {}
        if task_types is not None:
            claims["types"] = sorted(set(task_types))
        if tags is not None:
            claims["tags"] = sorted(set(tags))
        return self._sign(worker_id, expires_in, token_id, now, claims)

    def authenticate(
        self, headers: Mapping[str, str], certificate: dict[str, Any] | None
    ) -> Claims:
        payload = self._verify(headers, "a worker token")
        try:
            claims = Claims(
                worker_id=_text(payload["sub"], "sub"),
                task_types=_names(payload.get("types"), "types"),
                tags=_names(payload.get("tags"), "tags"),
                token_id=_text(payload["jti"], "jti"),
                expires_at=float(payload["exp"]),
            )
        except (TypeError, ValueError) as exc:
            raise AuthenticationFailed(f"invalid token: {exc}") from None
        if self.revoked(claims):
            raise AuthenticationFailed(f"token {claims.token_id} has been revoked")
        return claims

    def revoked(self, claims: Claims) -> bool:
        return self._is_revoked(claims.token_id)


def _secret_key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < _MIN_SECRET_BYTES:
        raise ValueError(
            f"a token secret must be at least {_MIN_SECRET_BYTES} bytes, not "
            f"{len(key)} (trio-pipe token secret makes one)"
        )
    return key


def _bearer_token(headers: Mapping[str, str], kind: str) -> str:
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if value is None:
        raise AuthenticationFailed(f"no Authorization header ({kind} is needed)")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("the Authorization header is not 'Bearer <token>'")
    return token.strip()


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"claim {name!r} must be a non-empty string")
    return value


def _names(value: object, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"claim {name!r} must be a list of strings")
    return tuple(value)


class CertificateAuth:
    """Mutual TLS: the dispatcher's ``ssl_context`` requires a client certificate
    (``verify_mode = ssl.CERT_REQUIRED``, the clients' CA loaded), and *claims* maps
    each verified certificate (as :meth:`ssl.SSLSocket.getpeercert` gives it) to the
    connection's :class:`Claims`, or to ``None`` to refuse it (403).

    :meth:`by_common_name` is the usual mapping: the certificate's subject common name
    is the only worker id it may register under.
    """

    def __init__(self, claims: Callable[[dict[str, Any]], Claims | None]) -> None:
        self._claims = claims

    @classmethod
    def by_common_name(
        cls,
        *,
        task_types: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
    ) -> CertificateAuth:
        """Each certificate's subject CN is its worker id; every certificate may
        claim *task_types* and *tags* (``None``: any)."""
        types = None if task_types is None else tuple(task_types)
        allowed_tags = None if tags is None else tuple(tags)

        def claims(certificate: dict[str, Any]) -> Claims | None:
            name = common_name(certificate)
            if name is None:
                return None
            return Claims(
                worker_id=glob.escape(name),
                task_types=types,
                tags=allowed_tags,
                token_id=_serial(certificate),
                expires_at=_not_after(certificate),
            )

        return cls(claims)

    def authenticate(
        self, headers: Mapping[str, str], certificate: dict[str, Any] | None
    ) -> Claims:
        if not certificate:
            raise AuthenticationFailed("no client certificate (mutual TLS is required)")
        claims = self._claims(certificate)
        if claims is None:
            raise AuthenticationFailed(
                "this client certificate may not attach workers", status=403
            )
        return claims

    def revoked(self, claims: Claims) -> bool:
        return False  # certificates are revoked where they are verified: CRLs, the CA


def common_name(certificate: Mapping[str, Any]) -> str | None:
    """The subject's common name in a certificate as ``getpeercert()`` gives it."""
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _serial(certificate: Mapping[str, Any]) -> str | None:
    serial = certificate.get("serialNumber")
    return None if serial is None else f"cert:{serial}"


def _not_after(certificate: Mapping[str, Any]) -> float | None:
    not_after = certificate.get("notAfter")
    return None if not_after is None else float(ssl.cert_time_to_seconds(not_after))


class ApiScope(enum.Enum):
    """What an HTTP API token may do: ``read`` (every ``GET``) or ``admin`` (also
    submit, cancel, drain and remove workers, requeue and purge dead letters)."""

    READ = "read"
    ADMIN = "admin"


@attrs.frozen
class ApiClaims:
    """What one HTTP API request may do, by the token it carried."""

    scope: ApiScope
    subject: str
    token_id: str
    expires_at: float

    def allows(self, needed: ApiScope) -> bool:
        return self.scope is ApiScope.ADMIN or needed is ApiScope.READ


class ApiAuth(_SignedTokens):
    """HTTP API tokens (``open_dispatcher(http=..., http_auth=ApiAuth(...))``): JWTs
    signed with HMAC-SHA256 under *secret*, as :class:`TokenAuth`'s worker tokens, for
    another audience -- neither kind of token is accepted as the other, even under one
    secret. Each carries a scope (:class:`ApiScope`) and an id, revocable through
    *revocations* (a file of token ids, read again when it changes; :func:`revoke`)."""

    _audience = API_AUDIENCE

    def create(
        self,
        scope: ApiScope | str,
        *,
        expires_in: float,
        subject: str = "api",
        token_id: str | None = None,
        now: float | None = None,
    ) -> str:
        """A token of *scope* for *subject* (who holds it: shown in logs), valid for
        *expires_in* seconds from *now*."""
        claims = {"scope": ApiScope(scope).value}
        return self._sign(subject, expires_in, token_id, now, claims)

    def authenticate(self, headers: Mapping[str, str]) -> ApiClaims:
        """The claims of the request with *headers* (``Authorization: Bearer``).
        Raises :class:`AuthenticationFailed`."""
        payload = self._verify(headers, "an API token")
        try:
            claims = ApiClaims(
                scope=ApiScope(payload.get("scope")),
                subject=_text(payload["sub"], "sub"),
                token_id=_text(payload["jti"], "jti"),
                expires_at=float(payload["exp"]),
            )
        except (TypeError, ValueError) as exc:
            raise AuthenticationFailed(f"invalid token: {exc}") from None
        if self._is_revoked(claims.token_id):
            raise AuthenticationFailed(f"token {claims.token_id} has been revoked")
        return claims


def new_secret() -> str:
    """A fresh random secret for :class:`TokenAuth` (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def revoke(path: str | os.PathLike[str], token_id: str) -> None:
    """Add *token_id* to the revocation file at *path* (created if missing): one
    appended line, so that a dispatcher reading it sees it whole or not at all."""
    token_id = token_id.strip()
    if not token_id or any(c.isspace() or c == "#" for c in token_id):
        raise ValueError(f"not a token id: {token_id!r}")
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(descriptor).st_size
        # A file edited by hand may lack its last newline: the id needs a line.
        start = b"\n" if size and os.pread(descriptor, 1, size - 1) != b"\n" else b""
        os.write(descriptor, start + f"{token_id}\n".encode())
    finally:
        os.close(descriptor)
