"""The worker's side of authentication and TLS: the token in the handshake, refusals
that end the worker, and certificates, against real servers.

Most tests run a trio-websocket server that plays a dispatcher checking credentials:
it answers each handshake as the test says (accept, or an HTTP error), and after
``WorkerRegister`` either registers the worker and shuts it down, or closes the
connection with 1008. Mutual TLS is tested against trio_pipe's own dispatcher, and a
TLS alert against the standard library's OpenSSL server, which sends one.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trustme
from helpers import error_line, worker_cli
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

import trio_pipe
from trio_pipe import HandshakeRefused, RegistrationRefused, WorkerConnectionError
from trio_pipe.protocol import (
    Shutdown,
    Task,
    WorkerRegister,
    WorkerRegistered,
    decode,
    encode,
)
from trio_pipe.worker import Handlers, run_worker

WAIT = 20  # seconds: a generous bound on every real-time wait (subprocesses too)
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJl"

Answer = Callable[[WebSocketRequest, int], Awaitable[None]]


def handlers() -> Handlers:
    table = Handlers()

    @table.handler("echo")
    async def echo(payload: Any) -> Any:
        return payload

    return table


@attrs.define
class AuthServer:
    """A WebSocket server that records every handshake and answers it with *answer*
    (given the request and its number, from 0)."""

    answer: Answer
    requests: list[WebSocketRequest] = attrs.field(factory=list)
    url: str = ""

    async def start(
        self, nursery: trio.Nursery, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        async def handler(request: WebSocketRequest) -> None:
            self.requests.append(request)
            await self.answer(request, len(self.requests) - 1)

        server = await nursery.start(
            partial(serve_websocket, handler, "127.0.0.1", 0, ssl_context)
        )
        scheme = "ws" if ssl_context is None else "wss"
        self.url = f"{scheme}://127.0.0.1:{server.port}/workers"
        return self.url

    def header(self, index: int, name: bytes) -> bytes | None:
        values = [v for k, v in self.requests[index].headers if k.lower() == name]
        assert len(values) <= 1
        return values[0] if values else None


async def _registration(ws: WebSocketConnection) -> WorkerRegister:
    message = decode(await ws.get_message())
    assert isinstance(message, WorkerRegister)
    return message


async def register_then_shut_down(request: WebSocketRequest, _: int) -> None:
    """Register the worker, then shut it down: ``run_worker`` returns."""
    ws = await request.accept()
    registration = await _registration(ws)
    await ws.send_message(encode(WorkerRegistered(registration.registration.worker_id)))
    await ws.send_message(encode(Shutdown(graceful=True)))
    with contextlib.suppress(ConnectionClosed):
        await ws.get_message()  # until the worker closes


def reject(status: int, body: bytes) -> Answer:
    async def answer(request: WebSocketRequest, _: int) -> None:
        await request.reject(status, body=body)

    return answer


async def run(url: str, **options: Any) -> Any:
    with trio.fail_after(WAIT):
        return await run_worker(url, handlers(), backoff_initial=0.01, **options)


# -- the token ------------------------------------------------------------------------


async def test_the_token_goes_in_the_authorization_header_never_the_url(
    nursery: trio.Nursery,
) -> None:
    server = AuthServer(register_then_shut_down)
    url = await server.start(nursery)
    await run(url, token=TOKEN)
    assert server.header(0, b"authorization") == f"Bearer {TOKEN}".encode()
    assert server.requests[0].path == "/workers"


async def test_the_token_comes_from_trio_pipe_token(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIO_PIPE_TOKEN", TOKEN)
    server = AuthServer(register_then_shut_down)
    url = await server.start(nursery)
    await run(url)
    assert server.header(0, b"authorization") == f"Bearer {TOKEN}".encode()


async def test_the_option_wins_over_the_environment(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIO_PIPE_TOKEN", "from-the-environment")
    server = AuthServer(register_then_shut_down)
    url = await server.start(nursery)
    await run(url, token="from-the-option")
    assert server.header(0, b"authorization") == b"Bearer from-the-option"


async def test_without_a_token_no_authorization_header_is_sent(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIO_PIPE_TOKEN", "")  # empty: not set
    server = AuthServer(register_then_shut_down)
    url = await server.start(nursery)
    await run(url)
    assert server.header(0, b"authorization") is None


async def test_the_token_is_never_logged_not_even_at_debug(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, and the WebSocket library's

    async def accept_then_refuse(request: WebSocketRequest, index: int) -> None:
        if index == 0:
            await register_then_shut_down(request, index)
        else:
            await request.reject(401, body=b"token revoked")

    server = AuthServer(accept_then_refuse)
    url = await server.start(nursery)
    await run(url, token=TOKEN)
    with pytest.raises(HandshakeRefused):
        await run(url, token=TOKEN)
    assert any(r.name.startswith("websockets") for r in caplog.records)  # it did log
    assert TOKEN not in caplog.text
    assert not any(TOKEN in str(record.args) for record in caplog.records)


@pytest.mark.parametrize(
    "token",
    ["", "two words", "line\nbreak", "tab\there", "caf\u00e9"],
    ids=["empty", "space", "newline", "tab", "non-ascii"],
)
async def test_a_token_that_cannot_be_a_header_is_refused_before_any_io(
    token: str,
) -> None:
    with pytest.raises(ValueError, match="token") as refused:
        await run_worker("ws://127.0.0.1:1", handlers(), token=token)
    if token:
        assert token not in str(refused.value)


# -- refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "token expired"), (403, "worker id w1 not allowed")]
)
async def test_a_refused_handshake_raises_at_once_without_reconnecting(
    nursery: trio.Nursery, status: int, reason: str
) -> None:
    server = AuthServer(reject(status, reason.encode()))
    url = await server.start(nursery)
    with pytest.raises(HandshakeRefused) as refused:
        await run(url, token=TOKEN)  # reconnect=True: still not retried
    assert (refused.value.status, refused.value.reason) == (status, reason)
    assert str(refused.value) == (
        f"the dispatcher refused the connection (HTTP {status}): {reason}"
    )
    assert isinstance(refused.value, WorkerConnectionError)
    assert len(server.requests) == 1


async def test_a_refusal_without_a_body_gives_its_status_phrase(
    nursery: trio.Nursery,
) -> None:
    server = AuthServer(reject(401, b""))
    url = await server.start(nursery)
    with pytest.raises(HandshakeRefused, match=r"\(HTTP 401\): Unauthorized$"):
        await run(url)


async def test_a_long_multiline_reason_is_cut_to_one_short_line(
    nursery: trio.Nursery,
) -> None:
    server = AuthServer(reject(401, b"first line\r\nsecond " + b"x" * 1000))
    url = await server.start(nursery)
    with pytest.raises(HandshakeRefused) as refused:
        await run(url)
    assert refused.value.reason.startswith("first line second xxx")
    assert refused.value.reason.endswith("...")
    assert len(refused.value.reason) == 200


async def test_a_dispatcher_at_its_connection_limit_is_retried(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def busy_twice(request: WebSocketRequest, index: int) -> None:
        if index < 2:
            await request.reject(503, body=b"at the connection limit")
        else:
            await register_then_shut_down(request, index)

    server = AuthServer(busy_twice)
    url = await server.start(nursery)
    await run(url, token=TOKEN)
    assert len(server.requests) == 3
    assert (
        "the dispatcher refused the connection (HTTP 503): at the connection limit; "
        "reconnecting in"
    ) in caplog.text


async def test_1008_before_registered_raises_registration_refused(
    nursery: trio.Nursery,
) -> None:
    reason = "task type 'echo' is outside the token's scope"

    async def refuse_registration(request: WebSocketRequest, _: int) -> None:
        ws = await request.accept()
        await _registration(ws)
        await ws.aclose(1008, reason)

    server = AuthServer(refuse_registration)
    url = await server.start(nursery)
    with pytest.raises(RegistrationRefused) as refused:
        await run(url, token=TOKEN)
    assert refused.value.reason == reason
    assert str(refused.value) == f"the dispatcher refused the registration: {reason}"
    assert len(server.requests) == 1


async def test_1008_after_registration_is_a_lost_connection_as_before(
    nursery: trio.Nursery,
) -> None:
    async def policy_close_once(request: WebSocketRequest, index: int) -> None:
        if index > 0:
            await register_then_shut_down(request, index)
            return
        ws = await request.accept()
        registration = await _registration(ws)
        await ws.send_message(encode(WorkerRegistered(registration.registration.worker_id)))
        await ws.aclose(1008, "invalid TaskResult")

    server = AuthServer(policy_close_once)
    url = await server.start(nursery)
    await run(url)
    assert len(server.requests) == 2


# -- TLS ------------------------------------------------------------------------------


@attrs.frozen
class Pki:
    """A CA, the dispatcher's certificate for 127.0.0.1, and a worker's client
    certificate, as PEM files."""

    authority: trustme.CA
    cafile: Path
    certfile: Path
    keyfile: Path
    combined: Path  # the key and the certificate in one file


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    authority = trustme.CA()
    client = authority.issue_cert("worker-1.workers.example")
    files = Pki(
        authority,
        directory / "ca.pem",
        directory / "worker.pem",
        directory / "worker.key",
        directory / "worker-with-key.pem",
    )
    authority.cert_pem.write_to_path(str(files.cafile))
    client.cert_chain_pems[0].write_to_path(str(files.certfile))
    client.private_key_pem.write_to_path(str(files.keyfile))
    client.private_key_and_cert_chain_pem.write_to_path(str(files.combined))
    return files


def server_context(pki: Pki, *, require_client_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.authority.issue_cert("127.0.0.1").configure_cert(context)
    if require_client_certificate:
        context.verify_mode = ssl.CERT_REQUIRED
        pki.authority.configure_trust(context)
    return context


async def _worker_cli(
    *options: str, env: dict[str, str] | None = None, reconnect: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """``trio-pipe worker`` run to its end, logging at DEBUG, with ``--no-reconnect``
    unless *reconnect*."""
    no_reconnect = [] if reconnect else ["--no-reconnect"]
    with trio.fail_after(WAIT):
        return await worker_cli(*options, *no_reconnect, env=env, log_level="DEBUG")


@pytest.mark.parametrize("key_in_certfile", [False, True], ids=["keyfile", "combined"])
async def test_mutual_tls_accepts_the_worker_with_its_client_certificate(
    pki: Pki, key_in_certfile: bool
) -> None:
    context = server_context(pki, require_client_certificate=True)
    key = ["--certfile", str(pki.combined)]
    if not key_in_certfile:
        key = ["--certfile", str(pki.certfile), "--keyfile", str(pki.keyfile)]
    exits: list[subprocess.CompletedProcess[bytes]] = []

    async def worker(url: str) -> None:
        exits.append(await _worker_cli("--url", url, "--cafile", str(pki.cafile), *key))

    async with trio.open_nursery() as worker_nursery:
        async with trio_pipe.open_dispatcher(ssl_context=context) as dispatcher:
            worker_nursery.start_soon(worker, dispatcher.url)
            with trio.fail_after(WAIT):
                await dispatcher.wait_for_workers(1)
                assert await dispatcher.run(Task.new("echo", "over mTLS")) == "over mTLS"
    (completed,) = exits  # shut down by the dispatcher as it closed
    assert completed.returncode == 0, completed.stderr.decode()


async def test_mutual_tls_refuses_a_worker_without_a_client_certificate(
    pki: Pki,
) -> None:
    """trio_pipe's dispatcher, on Trio's TLS streams, hangs up without a TLS alert:
    the worker says what that likely means."""
    context = server_context(pki, require_client_certificate=True)
    async with trio_pipe.open_dispatcher(ssl_context=context) as dispatcher:
        completed = await _worker_cli("--url", dispatcher.url, "--cafile", str(pki.cafile))
        assert dispatcher.workers() == []
    assert completed.returncode == 1
    assert error_line(completed).endswith(
        "(after the TLS handshake: a server that requires a client certificate hangs "
        "up on a worker without one)"
    )


async def test_a_tls_alert_refusing_the_worker_is_reported_as_one(pki: Pki) -> None:
    """A server that sends the TLS alert (OpenSSL on a plain socket, as most do):
    the alert reaches the worker during the WebSocket handshake, and is named."""
    context = server_context(pki, require_client_certificate=True)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    port = listener.getsockname()[1]

    def refuse_one_client() -> None:
        with listener, listener.accept()[0] as connection, connection.dup() as raw:
            with contextlib.suppress(ssl.SSLError):
                context.wrap_socket(connection, server_side=True).close()
            # Read what the worker sent before it saw the alert, until it hangs up:
            # closing with unread data would reset the connection, alert and all.
            raw.settimeout(WAIT)
            while raw.recv(65536):
                pass

    client = ssl.create_default_context(cafile=str(pki.cafile))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.to_thread.run_sync, refuse_one_client))
        with pytest.raises(WorkerConnectionError) as failed:
            await run(f"wss://127.0.0.1:{port}", reconnect=False, ssl_context=client)
    assert str(failed.value).endswith(
        f"TLS handshake with 127.0.0.1:{port} failed: tlsv13 alert certificate "
        "required (the server requires a client certificate)"
    )


async def test_the_tls_files_may_come_from_the_environment(
    nursery: trio.Nursery, pki: Pki
) -> None:
    server = AuthServer(register_then_shut_down)
    url = await server.start(nursery, server_context(pki, require_client_certificate=True))
    env = {
        "TRIO_PIPE_CAFILE": str(pki.cafile),
        "TRIO_PIPE_CERTFILE": str(pki.certfile),
        "TRIO_PIPE_KEYFILE": str(pki.keyfile),
    }
    completed = await _worker_cli("--url", url, env=env)
    assert completed.returncode == 0, completed.stderr.decode()


async def test_an_untrusted_server_certificate_is_reported_as_one(
    nursery: trio.Nursery, pki: Pki
) -> None:
    server = AuthServer(register_then_shut_down)
    url = await server.start(nursery, server_context(pki, require_client_certificate=False))
    port = url.rsplit(":", 1)[1].split("/")[0]
    with pytest.raises(WorkerConnectionError) as failed:
        await run(url, reconnect=False)  # the system's trust store: not our CA
    assert str(failed.value).endswith(
        f"TLS handshake with 127.0.0.1:{port} failed: certificate verify failed: "
        "unable to get local issuer certificate"
    )


async def test_a_bad_certificate_is_retried_like_any_failed_connection(
    nursery: trio.Nursery, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """Only 401, 403 and 1008 at registration are fatal: the operator may fix the
    certificate without restarting the worker."""
    server = AuthServer(register_then_shut_down)
    url = await server.start(nursery, server_context(pki, require_client_certificate=False))
    failures = trio.Semaphore(0)

    class CountFailures(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "certificate verify failed" in record.getMessage():
                failures.release()

    counter = CountFailures()
    logging.getLogger("trio_pipe.worker").addHandler(counter)
    try:
        async with trio.open_nursery() as worker_nursery:
            worker_nursery.start_soon(partial(run, url))
            with trio.fail_after(WAIT):
                await failures.acquire()
                await failures.acquire()
            worker_nursery.cancel_scope.cancel()
    finally:
        logging.getLogger("trio_pipe.worker").removeHandler(counter)
    assert (
        "certificate verify failed: unable to get local issuer certificate; reconnecting in"
    ) in caplog.text


async def test_ssl_context_reaches_the_handshake(nursery: trio.Nursery, pki: Pki) -> None:
    server = AuthServer(register_then_shut_down)
    url = await server.start(nursery, server_context(pki, require_client_certificate=True))
    client = ssl.create_default_context(cafile=str(pki.cafile))
    client.load_cert_chain(str(pki.certfile), str(pki.keyfile))
    await run(url, ssl_context=client, token=TOKEN)
    assert server.header(0, b"authorization") == f"Bearer {TOKEN}".encode()


async def test_ssl_context_is_refused_for_a_ws_url() -> None:
    with pytest.raises(ValueError, match="ssl_context is for wss:// URLs"):
        await run_worker(
            "ws://127.0.0.1:1", handlers(), ssl_context=ssl.create_default_context()
        )


# -- the command line -------------------------------------------------------------------


async def test_the_cli_reads_the_token_file_whole_and_stripped(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = AuthServer(register_then_shut_down)
    url = await server.start(nursery)
    token_file = tmp_path / "token"
    token_file.write_text(f"\n  {TOKEN}\n\n")
    completed = await _worker_cli("--url", url, "--token-file", str(token_file))
    assert completed.returncode == 0, completed.stderr.decode()
    assert server.header(0, b"authorization") == f"Bearer {TOKEN}".encode()
    assert TOKEN.encode() not in completed.stderr


async def test_the_cli_reports_a_refused_token_in_one_line_and_exits_1(
    nursery: trio.Nursery,
) -> None:
    server = AuthServer(reject(401, b"token revoked"))
    url = await server.start(nursery)
    # It may reconnect: a refusal ends it all the same.
    completed = await _worker_cli(
        "--url", url, env={"TRIO_PIPE_TOKEN": TOKEN}, reconnect=True
    )
    assert completed.returncode == 1
    assert error_line(completed) == (
        "trio-pipe worker: the dispatcher refused the connection (HTTP 401): token revoked"
    )
    assert TOKEN.encode() not in completed.stderr
    assert len(server.requests) == 1


async def test_the_cli_reports_a_refused_registration_in_one_line_and_exits_1(
    nursery: trio.Nursery,
) -> None:
    async def refuse_registration(request: WebSocketRequest, _: int) -> None:
        ws = await request.accept()
        await _registration(ws)
        await ws.aclose(1008, "worker id held by a live connection")

    server = AuthServer(refuse_registration)
    url = await server.start(nursery)
    completed = await _worker_cli("--url", url, reconnect=True)
    assert completed.returncode == 1
    assert error_line(completed) == (
        "trio-pipe worker: the dispatcher refused the registration: "
        "worker id held by a live connection"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--url", "ws://127.0.0.1:1", "--token-file", "/nonexistent/token"],
            "--token-file: cannot read /nonexistent/token: FileNotFoundError",
        ),
        (
            ["--url", "ws://127.0.0.1:1", "--cafile", "ca.pem"],
            "--cafile: TLS applies to wss:// URLs only",
        ),
        (
            ["--url", "wss://127.0.0.1:1", "--keyfile", "worker.key"],
            "--keyfile needs --certfile",
        ),
        (
            ["--url", "wss://127.0.0.1:1", "--cafile", "/nonexistent/ca.pem"],
            "--cafile /nonexistent/ca.pem: FileNotFoundError",
        ),
        (
            ["--url", "wss://127.0.0.1:1", "--certfile", "/nonexistent/worker.pem"],
            "--certfile/--keyfile /nonexistent/worker.pem: FileNotFoundError",
        ),
        (
            ["--stdio", "--token-file", "token"],
            "--token-file applies to --url workers only",
        ),
        (["--stdio", "--cafile", "ca.pem"], "--cafile applies to --url workers only"),
    ],
)
def test_bad_credential_options_are_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    from trio_pipe.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--handlers", "tests.worker_handlers:HANDLERS", *options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_an_empty_token_file_is_refused_without_showing_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from trio_pipe.cli import main

    token_file = tmp_path / "token"
    token_file.write_text("  \n")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                *("worker", "--url", "ws://127.0.0.1:1"),
                *("--token-file", str(token_file)),
                *("--handlers", "tests.worker_handlers:HANDLERS"),
            ]
        )
    assert exit_info.value.code == 2
    assert f"--token-file {token_file}: the token is empty" in capsys.readouterr().err


def test_the_errors_are_public_and_pickle() -> None:
    import pickle

    refused = pickle.loads(pickle.dumps(HandshakeRefused(401, "bad token")))
    assert (refused.status, refused.reason, str(refused)) == (
        401,
        "bad token",
        "the dispatcher refused the connection (HTTP 401): bad token",
    )
    registration = pickle.loads(pickle.dumps(RegistrationRefused("scope")))
    assert registration.reason == "scope"
    assert trio_pipe.HandshakeRefused is HandshakeRefused
    assert issubclass(HandshakeRefused, trio_pipe.HandshakeFailed)
