"""Docker workers against a real engine (no registry: the image is made with
`docker import` from a root filesystem holding one static Go worker binary).

Skipped where no Docker engine answers, unless TRIO_PIPE_REQUIRE_DOCKER=1 (as in CI,
whose .ci/run starts dockerd), in which case a missing engine is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator

import pytest
import trio
from helpers import ROOT, child_processes

import trio_pipe
from trio_pipe import ErrorCode, Task, TaskStatus, WorkerEvent, WorkerEventKind
from trio_pipe.dispatch import RestartPolicy

pytestmark = pytest.mark.slow

IMAGE = "trio-pipe-test/go-worker:1"
FAST_RESTART = RestartPolicy(backoff=0.05, backoff_max=0.2)


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=check
    )


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return _docker("info", check=False).returncode == 0


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not _engine_answers():
        if os.environ.get("TRIO_PIPE_REQUIRE_DOCKER") == "1":
            pytest.fail("TRIO_PIPE_REQUIRE_DOCKER=1 but no Docker engine answers")
        pytest.skip("no Docker engine answers (set DOCKER_HOST, or see .ci/run)")
    if shutil.which("go") is None:
        pytest.fail("building the test image needs Go")
    build = tmp_path_factory.mktemp("image")
    subprocess.run(
        [
            "go",
            "build",
            "-o",
            str(build / "worker"),
            str(ROOT / "tests/docker_worker/main.go"),
        ],
        env={**os.environ, "CGO_ENABLED": "0", "GOCACHE": str(build / "gocache")},
        check=True,
        timeout=300,
    )
    with tarfile.open(build / "rootfs.tar", "w") as rootfs:
        rootfs.add(build / "worker", arcname="worker")
    _docker("import", str(build / "rootfs.tar"), IMAGE)
    yield IMAGE
    _docker("rmi", "--force", IMAGE, check=False)


def _containers() -> list[str]:
    return _docker(
        "ps", "--all", "--filter", "name=trio-pipe-", "--format", "{{.Names}}"
    ).stdout.split()


async def test_a_container_is_a_worker(image: str) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        worker_id = await d.spawn_docker(
            image, ["echo", "whoami"], command=["/worker"], network="none", worker_id="box"
        )
        with trio.fail_after(60):
            assert await d.run(Task.new("echo", {"hello": "container"})) == {
                "hello": "container"
            }
            hostname = await d.run(Task.new("whoami", None))
        assert hostname != os.uname().nodename  # it ran in the container
        assert _containers() == [f"trio-pipe-{worker_id}"]
        (info,) = d.workers()
        assert info.transport == "docker"
    assert _containers() == []
    assert child_processes() == []


async def test_docker_kill_mid_task_retries_the_task_and_restarts_the_container(
    image: str,
) -> None:
    async with trio_pipe.open_dispatcher(port=None, retry_backoff=0.01) as d:
        async with d.events() as events:
            await d.spawn_docker(
                image,
                ["sleep", "whoami"],
                command=["/worker"],
                network="none",
                worker_id="victim",
                restart=FAST_RESTART,
            )
            with trio.fail_after(60):
                first = await d.run(Task.new("whoami", None))
                handle = await d.submit(Task.new("sleep", {"seconds": 0.5}))
                async for event in events:
                    if getattr(event, "kind", None) is trio_pipe.TaskEventKind.DISPATCHED:
                        break
                await trio.to_thread.run_sync(_docker, "kill", "trio-pipe-victim")
                result = await handle.result()
                second = await d.run(Task.new("whoami", None))
            events.close()
            kinds = [e.kind async for e in events if isinstance(e, WorkerEvent)]
    assert result.status is TaskStatus.COMPLETED
    assert handle.attempts[0].error is not None
    assert handle.attempts[0].error.code == ErrorCode.WORKER_DISCONNECTED
    assert first != second  # a new container (a new hostname)
    assert WorkerEventKind.RESTARTING in kinds
    assert _containers() == []


async def test_the_memory_limit_is_enforced(image: str) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_docker(
            image,
            ["alloc"],
            command=["/worker"],
            network="none",
            memory="32m",
            worker_id="small",
            restart=FAST_RESTART,
        )
        with trio.fail_after(60):
            assert await d.run(Task.new("alloc", {"mb": 4})) == 4 << 20
            too_much = await d.submit(Task.new("alloc", {"mb": 256}, max_retries=0))
            result = await too_much.result()
        assert result.status is TaskStatus.FAILED
        assert result.error is not None
        assert result.error.code == ErrorCode.WORKER_DISCONNECTED  # the OOM killer


async def test_options_reach_docker_run_and_bad_ones_never_do(image: str) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        await d.spawn_docker(
            image,
            ["echo"],
            command=["/worker"],
            network="none",
            read_only=True,
            user="65534:65534",
            cpus=0.5,
            env={"GREETING": "hello"},
            worker_id="opts",
        )
        with trio.fail_after(60):
            assert await d.run(Task.new("echo", 1)) == 1
        inspect = _docker(
            "inspect",
            "--format",
            "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{.HostConfig.NanoCpus}} {{.Config.Env}}",
            "trio-pipe-opts",
        ).stdout
        assert inspect.startswith("true 65534:65534 500000000 ")
        assert "GREETING=hello" in inspect
        for bad in [
            {"image": "--privileged"},
            {"image": image, "env": {"X": "$(reboot)"}},
            {"image": image, "volumes": ["/:/host;rm -rf /"]},
            {"image": image, "network": "--net=host"},
            {"image": image, "user": "root;id"},
            {"image": image, "memory": "lots"},
        ]:
            with pytest.raises(ValueError):
                await d.spawn_docker(tasks=["x"], **bad)  # type: ignore[arg-type]
        assert _containers() == ["trio-pipe-opts"]
    assert _containers() == []


def test_the_docs_example_runs(image: str) -> None:
    example = ROOT / "docs" / "examples" / "docker" / "docker_worker.py"
    done = subprocess.run(
        [sys.executable, str(example), image, "/worker"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "True {'from': 'a container'}" in done.stdout
    assert _containers() == []
