"""Worker authentication and authorisation: tokens and certificates checked in the
WebSocket handshake (401/403 before any protocol message), claims checked at
registration (1008), worker ids that cannot be hijacked, workers that cannot speak
for one another, revocation and expiry of live sessions, and the refusal to listen
beyond loopback without authentication. Over real sockets, except where the
dispatcher's own clock must be driven (memory workers under MockClock)."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import jwt
import pytest
import trio
import trio.testing
import trio_websocket
import trustme
from helpers import ROOT, open_raw_websocket, start_python_worker

import trio_pipe
from trio_pipe import Task, TaskStatus
from trio_pipe.auth import (
    AuthenticationFailed,
    CertificateAuth,
    Claims,
    TokenAuth,
    new_secret,
    revoke,
)
from trio_pipe.cli import main
from trio_pipe.protocol import (
    Heartbeat,
    HeartbeatPayload,
    TaskDispatch,
    TaskResult,
    TaskResultMessage,
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    decode,
    encode,
)
from trio_pipe.testing import connect_memory_worker

SECRET = "s" * 40
AUTH_HEADER = "Authorization"


def bearer(token: str) -> list[tuple[str, str]]:
    return [(AUTH_HEADER, f"Bearer {token}")]


def registration(worker_id: str, types: tuple[str, ...] = ("echo",), **kw: object) -> str:
    return encode(WorkerRegister(WorkerRegistration(worker_id, types, 4, "Python", **kw)))  # type: ignore[arg-type]


# -- tokens, without a dispatcher ------------------------------------------------------


def test_a_token_carries_its_claims() -> None:
    auth = TokenAuth(SECRET)
    token = auth.create(
        expires_in=60, task_types=["scan", "render"], tags=["gpu"], worker_id="gpu-*"
    )
    claims = auth.authenticate({"authorization": f"Bearer {token}"}, None)
    assert (claims.worker_id, claims.task_types, claims.tags) == (
        "gpu-*",
        ("render", "scan"),
        ("gpu",),
    )
    assert claims.token_id and claims.expires_at == pytest.approx(time.time() + 60, abs=2)
    assert TokenAuth(SECRET).create(expires_in=1).count(".") == 2  # a JWT


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no Authorization header"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "not 'Bearer <token>'"),
        ({"Authorization": "Bearer "}, "not 'Bearer <token>'"),
        ({"Authorization": "Bearer not.a.token"}, "invalid token"),
        (
            {"Authorization": "Bearer " + TokenAuth("o" * 40).create(expires_in=60)},
            "invalid token: Signature verification failed",
        ),
        (
            {"Authorization": "Bearer " + TokenAuth(SECRET).create(
                expires_in=60, now=time.time() - 3600
            )},
            "the token has expired",
        ),
        (
            # Signed with the secret, but not minted as a worker token (no audience).
            {"Authorization": "Bearer " + jwt.encode(
                {"sub": "*", "jti": "x", "iat": 0, "exp": 2**40}, SECRET, "HS256"
            )},
            "invalid token",
        ),
        (
            {"Authorization": "Bearer " + jwt.encode(
                {"aud": "trio-pipe-worker", "sub": "*", "jti": "x", "iat": 0,
                 "exp": 2**40, "types": "echo"}, SECRET, "HS256"
            )},
            "claim 'types' must be a list of strings",
        ),
        (
            # The "none" algorithm: a token anyone could forge.
            {"Authorization": "Bearer " + jwt.encode(
                {"aud": "trio-pipe-worker", "sub": "*", "jti": "x", "iat": 0,
                 "exp": 2**40}, None, "none"
            )},
            "invalid token",
        ),
    ],
    ids=[
        "missing", "not bearer", "empty", "garbage", "wrong secret", "expired",
        "no audience", "bad claim", "alg none",
    ],
)  # fmt: skip
def test_a_token_that_does_not_hold_is_refused_with_401(
    headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(AuthenticationFailed, match=reason) as caught:
        TokenAuth(SECRET, leeway=0).authenticate(headers, None)
    assert caught.value.status == 401


def test_a_refusal_names_what_failed_never_the_token() -> None:
    token = TokenAuth("o" * 40).create(expires_in=60)
    with pytest.raises(AuthenticationFailed) as caught:
        TokenAuth(SECRET).authenticate({"Authorization": f"Bearer {token}"}, None)
    assert token not in caught.value.reason
    assert token.split(".")[1] not in caught.value.reason


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes, not 6"):
        TokenAuth("secret")
    assert len(new_secret()) >= 32


def test_a_revoked_token_is_refused_as_soon_as_the_file_says_so(tmp_path: Path) -> None:
    revocations = tmp_path / "revoked"
    auth = TokenAuth(SECRET, revocations=revocations)
    token = auth.create(expires_in=60, token_id="t-1")
    headers = {"Authorization": f"Bearer {token}"}
    assert auth.authenticate(headers, None).token_id == "t-1"  # no file yet
    revocations.write_text("# revoked tokens\nt-0", encoding="utf-8")  # no newline
    assert auth.authenticate(headers, None).token_id == "t-1"
    revoke(revocations, "t-1")
    with pytest.raises(AuthenticationFailed, match="token t-1 has been revoked"):
        auth.authenticate(headers, None)
    assert revocations.read_text(encoding="utf-8").splitlines()[1:] == ["t-0", "t-1"]
    revocations.unlink()
    assert auth.authenticate(headers, None).token_id == "t-1"
    with pytest.raises(ValueError, match="not a token id"):
        revoke(revocations, "two words")


@pytest.mark.parametrize(
    ("claims", "registered", "refusal"),
    [
        (Claims(), WorkerRegistration("any", ("x",), 1, tags=("t",)), None),
        (Claims(worker_id="gpu-*"), WorkerRegistration("gpu-1", ("x",), 1), None),
        (
            Claims(worker_id="gpu-*"),
            WorkerRegistration("cpu-1", ("x",), 1),
            "worker id 'cpu-1' does not match 'gpu-*'",
        ),
        (
            Claims(task_types=("scan",)),
            WorkerRegistration("w", ("scan", "secret"), 1),
            "task type 'secret' not allowed",
        ),
        (
            Claims(tags=("gpu",)),
            WorkerRegistration("w", ("scan",), 1, tags=("gpu", "admin")),
            "tag 'admin' not allowed",
        ),
        (
            Claims(task_types=()),
            WorkerRegistration("w", tuple(f"t{i}" for i in range(9)), 1),
            "task type 't0', 't1', 't2', 't3', 't4' and 4 more not allowed",
        ),
    ],
)
def test_claims_bound_a_registration(
    claims: Claims, registered: WorkerRegistration, refusal: str | None
) -> None:
    found = claims.refusal(registered)
    assert found == refusal if refusal is None else refusal in (found or "")


def test_a_certificates_common_name_is_its_only_worker_id() -> None:
    auth = CertificateAuth.by_common_name(task_types=["scan"])
    certificate = {
        "subject": ((("countryName", "FR"),), (("commonName", "gpu-1"),)),
        "serialNumber": "0A",
        "notAfter": "Jan  1 00:00:00 2099 GMT",
    }
    claims = auth.authenticate({}, certificate)
    assert claims.refusal(WorkerRegistration("gpu-1", ("scan",), 1)) is None
    assert claims.refusal(WorkerRegistration("gpu-1x", ("scan",), 1)) is not None
    assert claims.refusal(WorkerRegistration("gpu-1", ("other",), 1)) is not None
    # A name with pattern characters matches itself only.
    star = auth.authenticate({}, {"subject": ((("commonName", "gpu-*"),),)})
    assert star.refusal(WorkerRegistration("gpu-1", ("scan",), 1)) is not None
    assert claims.token_id == "cert:0A" and not claims.ended(time.time())
    with pytest.raises(AuthenticationFailed, match="no client certificate") as caught:
        auth.authenticate({}, None)
    assert caught.value.status == 401
    with pytest.raises(AuthenticationFailed, match="may not attach") as caught:
        auth.authenticate({}, {"subject": ()})
    assert caught.value.status == 403


# -- the handshake, over real sockets --------------------------------------------------


@asynccontextmanager
async def dispatcher(**options: object) -> AsyncIterator[trio_pipe.Dispatcher]:
    options.setdefault("auth", TokenAuth(SECRET))
    async with trio_pipe.open_dispatcher(**options) as d:  # type: ignore[arg-type]
        yield d


async def register(ws: trio_websocket.WebSocketConnection, worker_id: str) -> None:
    await ws.send_message(registration(worker_id))
    assert isinstance(decode(await ws.get_message()), WorkerRegistered)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([], "no Authorization header"),
        (bearer("forged"), "invalid token"),
        (bearer(TokenAuth("o" * 40).create(expires_in=60)), "Signature verification"),
        (bearer(TokenAuth(SECRET).create(expires_in=1, now=0)), "expired"),
        ([(AUTH_HEADER.lower(), "bearer x"), ("X-Token", "y")], "invalid token"),
    ],
    ids=["none", "forged", "wrong secret", "expired", "lower-case header"],
)
async def test_a_handshake_without_valid_credentials_gets_401_and_no_task(
    headers: list[tuple[str, str]], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with dispatcher() as d:
        submitted = await d.submit(Task.new("secret", {"card": "4111"}))
        with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionRejected) as no:
            async with open_raw_websocket(d.url, headers=headers):
                pass
        assert no.value.status_code == 401
        assert reason in (no.value.body or b"").decode()
        assert submitted.status is TaskStatus.PENDING and d.workers() == []
    assert "refused with HTTP 401" in caplog.text


async def test_a_revoked_token_gets_401_and_its_live_session_is_closed(
    tmp_path: Path,
) -> None:
    revocations = tmp_path / "revoked"
    auth = TokenAuth(SECRET, revocations=revocations)
    token = auth.create(expires_in=600, token_id="laptop-7")
    async with dispatcher(auth=auth, credentials_check_interval=0.05) as d:
        async with open_raw_websocket(d.url, headers=bearer(token)) as ws:
            await register(ws, "w")
            revoke(revocations, "laptop-7")
            with trio.fail_after(10):
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    while True:
                        await ws.get_message()
            assert closed.value.reason.code == 1000
            assert "revoked" in (closed.value.reason.reason or "")
        with pytest.raises(trio_websocket.ConnectionRejected) as refused:
            async with open_raw_websocket(d.url, headers=bearer(token)):
                pass
        assert b"token laptop-7 has been revoked" in (refused.value.body or b"")


async def test_a_registration_outside_its_claims_is_closed_with_1008() -> None:
    async with dispatcher() as d:
        token = TokenAuth(SECRET).create(expires_in=60, task_types=["scan"], tags=[])
        async with open_raw_websocket(d.url, headers=bearer(token)) as ws:
            await ws.send_message(registration("w", ("scan", "secret")))
            with (
                trio.fail_after(10),
                pytest.raises(trio_websocket.ConnectionClosed) as closed,
            ):
                await ws.get_message()
        assert closed.value.reason.code == 1008
        assert "task type 'secret' not allowed" in (closed.value.reason.reason or "")
        assert d.workers() == [] and d.pool_stats().rejected == 1


async def test_a_live_workers_id_cannot_be_taken_but_its_own_token_reconnects() -> None:
    auth = TokenAuth(SECRET)
    real = auth.create(expires_in=60, token_id="real")
    rogue = auth.create(expires_in=60, token_id="rogue")
    async with dispatcher(auth=auth) as d:
        async with open_raw_websocket(d.url, headers=bearer(real)) as first:
            await register(first, "w")
            async with open_raw_websocket(d.url, headers=bearer(rogue)) as ws:
                await ws.send_message(registration("w"))
                with (
                    trio.fail_after(10),
                    pytest.raises(trio_websocket.ConnectionClosed) as no,
                ):
                    await ws.get_message()
            assert no.value.reason.code == 1008
            assert "'w' is held by a live connection" in (no.value.reason.reason or "")
            # The real worker still holds its id, and gets the task.
            handle = await d.submit(Task.new("echo", 1))
            with trio.fail_after(10):
                dispatched = decode(await first.get_message())
            assert isinstance(dispatched, TaskDispatch)
            assert dispatched.task.id == handle.id
            # A reconnect with the same token replaces its stale session: the task
            # it held goes through the retry path, to the new connection.
            async with open_raw_websocket(d.url, headers=bearer(real)) as second:
                await register(second, "w")
                with trio.fail_after(10):
                    again = decode(await second.get_message())
                assert isinstance(again, TaskDispatch) and again.task.id == handle.id
                await second.send_message(
                    encode(TaskResultMessage(TaskResult(handle.id, TaskStatus.COMPLETED)))
                )
                assert (await handle.result()).status is TaskStatus.COMPLETED


async def test_a_heartbeat_for_another_worker_is_rejected_and_counted() -> None:
    async with dispatcher() as d:
        token = TokenAuth(SECRET).create(expires_in=60)
        async with open_raw_websocket(d.url, headers=bearer(token)) as ws:
            await register(ws, "rogue")
            forged = Heartbeat(HeartbeatPayload("victim", active_tasks=0, capacity=1))
            await ws.send_message(encode(forged))
            with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionClosed) as no:
                await ws.get_message()
        assert no.value.reason.code == 1008
        assert "names worker 'victim'" in (no.value.reason.reason or "")
        assert d.pool_stats().rejected == 1


async def test_an_authorised_worker_completes_tasks() -> None:
    token = TokenAuth(SECRET).create(expires_in=60, task_types=["echo"], worker_id="py-*")
    async with dispatcher() as d:
        async with open_raw_websocket(d.url, headers=bearer(token)) as ws:
            await register(ws, "py-1")
            handle = await d.submit(Task.new("echo", "hi"))
            dispatched = decode(await ws.get_message())
            assert isinstance(dispatched, TaskDispatch)
            await ws.send_message(
                encode(TaskResultMessage(TaskResult(handle.id, TaskStatus.COMPLETED)))
            )
            assert (await handle.result()).status is TaskStatus.COMPLETED


async def test_a_worker_process_with_a_token_file_serves_and_a_refused_one_stops(
    tmp_path: Path,
) -> None:
    auth = TokenAuth(SECRET, revocations=tmp_path / "revoked")
    good, bad = tmp_path / "good.token", tmp_path / "bad.token"
    good.write_text(auth.create(expires_in=60, worker_id="w") + "\n", encoding="utf-8")
    bad.write_text(auth.create(expires_in=60, token_id="gone"), encoding="utf-8")
    revoke(tmp_path / "revoked", "gone")
    async with dispatcher(auth=auth) as d, trio.open_nursery() as nursery:
        await start_python_worker(nursery, d.url, "w", extra=["--token-file", str(good)])
        with trio.fail_after(30):
            await d.wait_for_workers(1)
            assert await d.run(Task.new("echo", "hi")) == "hi"
        argv = [
            sys.executable, "-m", "trio_pipe", "worker", "--url", d.url,
            "--handlers", "tests.worker_handlers:HANDLERS", "--worker-id", "v",
            "--token-file", str(bad),
        ]  # fmt: skip
        with trio.fail_after(30):
            refused = await trio.run_process(
                argv, check=False, capture_stderr=True, stdin=subprocess.DEVNULL, cwd=ROOT
            )
        assert refused.returncode == 1
        assert (
            b"HTTP 401" in refused.stderr
            and b"token gone has been revoked" in refused.stderr
        )
        assert [w.worker_id for w in d.workers()] == ["w"]
        nursery.cancel_scope.cancel()


async def test_spawned_workers_need_no_token() -> None:
    plain = [sys.executable, str(ROOT / "tests" / "stdio_workers" / "plain.py")]
    async with dispatcher(port=None) as d:
        await d.spawn_stdio(plain, ["echo"])
        with trio.fail_after(30):
            assert (await d.run(Task.new("echo", 7)))["echo"] == 7


# -- live sessions: expiry, under the dispatcher's clock -------------------------------


async def test_a_session_whose_credentials_expire_is_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with dispatcher(port=None) as d:
        ended = Claims(expires_at=time.time() - 1, token_id="old")
        worker = await connect_memory_worker(d, "w", ["echo"], claims=ended)
        lasting = await connect_memory_worker(
            d, "v", ["echo"], claims=Claims(expires_at=time.time() + 3600)
        )
        await trio.sleep(1.5)
        assert [w.worker_id for w in d.workers() if w.state.value == "active"] == ["v"]
        assert worker.channel.close_reason == "its credentials have expired"
        del lasting


# -- exposure --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.org", ""])
async def test_listening_beyond_loopback_needs_auth_or_insecure(host: str) -> None:
    with pytest.raises(ValueError, match=r"without worker authentication.*insecure=True"):
        async with trio_pipe.open_dispatcher(host=host):
            pass


async def test_insecure_listening_is_allowed_and_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with trio_pipe.open_dispatcher(host="0.0.0.0", insecure=True) as d:
        assert d.port
    assert "with no worker authentication (insecure=True)" in caplog.text
    for host in ("127.0.0.1", "localhost"):
        async with trio_pipe.open_dispatcher(host=host):
            pass
    async with trio_pipe.open_dispatcher(host="0.0.0.0", port=None):
        pass  # no listener: nothing exposed


# -- mutual TLS ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_OPTIONAL  # so that "no certificate" reaches us
    return context


def _client_context(ca: trustme.CA, common_name: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if common_name is not None:
        ca.issue_cert(f"{common_name}.workers", common_name=common_name).configure_cert(
            context
        )
    return context


async def test_mutual_tls_maps_a_certificate_to_its_worker_id(ca: trustme.CA) -> None:
    auth = CertificateAuth.by_common_name(task_types=["echo"])
    async with trio_pipe.open_dispatcher(ssl_context=_server_context(ca), auth=auth) as d:
        assert d.url.startswith("wss://")
        async with open_raw_websocket(
            d.url, ssl_context=_client_context(ca, "gpu-1")
        ) as ws:
            await register(ws, "gpu-1")
        async with open_raw_websocket(
            d.url, ssl_context=_client_context(ca, "gpu-1")
        ) as ws:
            await ws.send_message(registration("gpu-2"))
            with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionClosed) as no:
                await ws.get_message()
            assert "does not match 'gpu-1'" in (no.value.reason.reason or "")
        with pytest.raises(trio_websocket.ConnectionRejected) as refused:
            async with open_raw_websocket(d.url, ssl_context=_client_context(ca, None)):
                pass
        assert refused.value.status_code == 401
        assert b"no client certificate" in (refused.value.body or b"")


# -- the token command -----------------------------------------------------------------


def test_the_token_command_makes_a_secret_a_token_and_revokes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "secret"]) == 0
    secret = tmp_path / "secret"
    secret.write_text(capsys.readouterr().out, encoding="utf-8")
    argv = ["token", "create", "--secret-file", str(secret), "--expires", "30d"]
    assert main([*argv, "--types", "scan,render", "--tags", "gpu", "--id", "ci-1"]) == 0
    out, err = capsys.readouterr()
    auth = TokenAuth.from_file(secret, revocations=tmp_path / "revoked")
    claims = auth.authenticate({"Authorization": f"Bearer {out.strip()}"}, None)
    assert (claims.task_types, claims.tags, claims.token_id) == (
        ("render", "scan"),
        ("gpu",),
        "ci-1",
    )
    assert claims.expires_at == pytest.approx(time.time() + 30 * 86400, abs=5)
    assert err.startswith("token ci-1, expires ")
    revocations = ["--revocations", str(tmp_path / "revoked")]
    assert main(["token", "revoke", "ci-1", *revocations]) == 0
    assert auth.revoked(claims)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "No such file or directory"),
        ("short", "at least 32 bytes, not 5"),
    ],
)
def test_the_token_command_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], secret: str | None, message: str
) -> None:
    path = tmp_path / "secret"
    if secret is not None:
        path.write_text(secret, encoding="utf-8")
    argv = ["token", "create", "--secret-file", str(path), "--expires", "1h"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("trio-pipe token create: ") and message in err
