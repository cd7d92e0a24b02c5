"""``trio-pipe worker``: load handlers from a module and serve them."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
import trustme
from _scripted_dispatcher import ScriptedDispatcher
from helpers import error_line, worker_cli

import trio_pipe
from trio_pipe.cli import main
from trio_pipe.protocol import Shutdown, TaskStatus, WorkerRegistration

WAIT = 20  # seconds: a subprocess has to start Python and import trio

ROOT = Path(__file__).resolve().parent.parent

HANDLERS_MODULE = textwrap.dedent(
    """
    from trio_pipe.worker import Handlers

    HANDLERS = Handlers()

    @HANDLERS.handler("upper")
    async def upper(payload):
        return payload.upper()

    async def _reverse(payload):
        return payload[::-1]

    AS_DICT = {"reverse": _reverse}
    NOT_HANDLERS = 42
    EMPTY = {}
    """
)


@pytest.fixture
def handlers_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding ``cli_worker_handlers.py``, made the current directory;
    ``sys.path`` and ``sys.modules`` are restored afterwards."""
    (tmp_path / "cli_worker_handlers.py").write_text(HANDLERS_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "cli_worker_handlers", raising=False)
    return tmp_path


async def test_worker_command_serves_a_module_s_handlers(
    nursery: trio.Nursery, handlers_dir: Path
) -> None:
    dispatcher = ScriptedDispatcher()
    url = await dispatcher.serve(nursery)
    argv = [
        sys.executable,
        "-m",
        "trio_pipe",
        "worker",
        "--url",
        url,
        "--handlers",
        "cli_worker_handlers:HANDLERS",
        "--worker-id",
        "cli-1",
        "--max-concurrency",
        "2",
        "--tag",
        "a",
        "--tag",
        "b",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    exited = trio.Event()
    returncode: list[int] = []

    async def run_cli() -> None:
        process = await trio.run_process(argv, cwd=handlers_dir, env=env, check=False)
        returncode.append(process.returncode)
        exited.set()

    with trio.fail_after(WAIT):
        nursery.start_soon(run_cli)
        peer = await dispatcher.peers.receive()
        result = await peer.run("upper", "shout")
        await peer.send(Shutdown(graceful=True))
        await exited.wait()
    assert peer.registration == WorkerRegistration(
        worker_id="cli-1",
        supported_tasks=("upper",),
        max_concurrency=2,
        language="Python",
        tags=("a", "b"),
    )
    assert (result.status, result.payload, result.worker_id) == (
        TaskStatus.COMPLETED,
        "SHOUT",
        "cli-1",
    )
    assert returncode == [0]


def test_bad_handlers_module_exits_2_with_a_message(
    handlers_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--url", "ws://127.0.0.1:1", "--handlers", "no_such_module_xyz:H"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "cannot import module 'no_such_module_xyz'" in err


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cli_worker_handlers", "expects MODULE:NAME"),
        ("cli_worker_handlers:MISSING", "has no attribute 'MISSING'"),
        ("cli_worker_handlers:NOT_HANDLERS", "is a int, expected"),
        ("cli_worker_handlers:EMPTY", "is empty: a worker needs at least one handler"),
    ],
)
def test_unusable_handlers_spec_exits_2_with_a_message(
    handlers_dir: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--url", "ws://127.0.0.1:1", "--handlers", spec])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_dict_of_handlers_is_loaded(handlers_dir: Path) -> None:
    from trio_pipe.cli import load_handlers

    assert list(load_handlers("cli_worker_handlers:AS_DICT")) == ["reverse"]


def test_python_dash_m_reports_a_bad_handlers_spec_with_status_2(
    handlers_dir: Path,
) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_pipe",
            "worker",
            "--url",
            "ws://127.0.0.1:1",
            "--handlers",
            "no_such_module_xyz:H",
        ],
        cwd=handlers_dir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert completed.returncode == 2
    assert "trio-pipe worker: error: cannot import module 'no_such_module_xyz'" in (
        completed.stderr
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRIO_PIPE_WORKER_ID", "-bad", "TRIO_PIPE_WORKER_ID: invalid worker id '-bad'"),
        ("TRIO_PIPE_MAX_CONCURRENCY", "0", "TRIO_PIPE_MAX_CONCURRENCY: must be at least 1"),
        ("TRIO_PIPE_HEARTBEAT_MS", "soon", "TRIO_PIPE_HEARTBEAT_MS: expected milliseconds"),
    ],
)
def test_options_from_the_environment_are_checked(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--stdio", "--handlers", "tests.worker_handlers:HANDLERS"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_other_subcommands_do_not_import_the_conformance_kit() -> None:
    code = (
        "import sys, trio_pipe.cli as cli\n"
        "cli._build_parser()\n"
        "assert 'trio_pipe.conformance' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=WAIT)


# -- every error is one clear line, with a non-zero status ------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ws://127.0.0.1:99999",
            "bad port in URL 'ws://127.0.0.1:99999': Port out of range",
        ),
        ("ws:///nohost", "expected a ws:// or wss:// URL with a host, got 'ws:///nohost'"),
        ("ws://127.0.0.1:abc", "bad port in URL 'ws://127.0.0.1:abc'"),
        ("http://127.0.0.1:80", "expected a ws:// or wss:// URL"),
    ],
)
def test_a_bad_url_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--url", url, "--handlers", "tests.worker_handlers:HANDLERS"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("trio-pipe worker: error: argument --url: ")
    assert message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-concurrency-by-type", "nope=1"], "no handler for task type 'nope'"),
        (["--max-concurrency-by-type", "echo=11"], "more than --max-concurrency (10)"),
        (["--max-concurrency-by-type", "echo"], "expected TYPE=N, got 'echo'"),
        (["--drain-timeout", "-1"], "must be a number of seconds >= 0"),
    ],
)
def test_bad_new_options_are_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    base = [
        "worker",
        "--url",
        "ws://127.0.0.1:1",
        "--handlers",
        "tests.worker_handlers:HANDLERS",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


async def test_a_server_that_never_answers_the_handshake_is_named_as_such(
    nursery: trio.Nursery,
) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    accepted: list[trio.abc.Stream] = []

    async def hold(stream: trio.abc.Stream) -> None:
        accepted.append(stream)
        await trio.sleep_forever()  # accepts, never answers

    nursery.start_soon(trio.serve_listeners, hold, listeners)
    with trio.fail_after(WAIT):
        completed = await worker_cli(
            "--no-reconnect", "--url", f"ws://127.0.0.1:{port}", "--connect-timeout", "0.5"
        )
    assert completed.returncode == 1
    assert error_line(completed).endswith(
        f"connecting to ws://127.0.0.1:{port} failed: the server accepted the connection "
        "but did not answer the WebSocket handshake within 0.5 s"
    )
    assert accepted


async def test_an_untrusted_certificate_is_named_as_such() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    async with trio_pipe.open_dispatcher(ssl_context=server_context) as d:
        with trio.fail_after(WAIT):
            completed = await worker_cli("--no-reconnect", "--url", d.url)
    assert completed.returncode == 1
    line = error_line(completed)
    port = d.url.rsplit(":", 1)[1].split("/")[0]
    assert line.endswith(
        f"TLS handshake with 127.0.0.1:{port} failed: certificate verify failed: "
        "unable to get local issuer certificate"
    )
