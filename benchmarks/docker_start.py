"""What a Docker worker costs to start: from spawn_docker to its first result.

Needs a Docker engine (DOCKER_HOST) and Go (to build the static worker binary that is
the image's only file, from tests/docker_worker/main.go); skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import trio_pipe
from trio_pipe import Task

IMAGE = "trio-pipe-bench/go-worker:1"
SOURCE = Path(__file__).resolve().parent.parent / "tests" / "docker_worker" / "main.go"


def available() -> bool:
    if shutil.which("docker") is None or shutil.which("go") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def build_image() -> None:
    with tempfile.TemporaryDirectory() as build:
        binary = Path(build) / "worker"
        env = {**os.environ, "CGO_ENABLED": "0", "GOCACHE": str(Path(build) / "gocache")}
        subprocess.run(["go", "build", "-o", str(binary), str(SOURCE)], env=env, check=True)
        with tarfile.open(Path(build) / "rootfs.tar", "w") as rootfs:
            rootfs.add(binary, arcname="worker")
        subprocess.run(
            ["docker", "import", str(Path(build) / "rootfs.tar"), IMAGE], check=True
        )


async def measure(starts: int = 5) -> dict[str, Any]:
    samples = []
    async with trio_pipe.open_dispatcher(port=None) as dispatcher:
        for n in range(starts):
            started = time.perf_counter()
            worker_id = await dispatcher.spawn_docker(
                IMAGE, ["echo"], command=["/worker"], network="none", worker_id=f"bench-{n}"
            )
            await dispatcher.run(Task.new("echo", n))
            samples.append((time.perf_counter() - started) * 1e3)
            dispatcher.remove_worker(worker_id)
    return {
        "scenario": f"docker worker start to first result ({starts} starts)",
        "start_ms_median": statistics.median(samples),
        "start_ms_min": min(samples),
        "start_ms_max": max(samples),
    }
