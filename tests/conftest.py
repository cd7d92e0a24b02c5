"""Suite-wide guarantees."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from helpers import child_processes


def _leftover_containers() -> list[str]:
    if shutil.which("docker") is None:
        return []
    listed = subprocess.run(
        ["docker", "ps", "--all", "--filter", "name=trio-pipe-", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return listed.stdout.split() if listed.returncode == 0 else []


@pytest.fixture(scope="session", autouse=True)
def nothing_is_left_behind() -> Iterator[None]:
    """After the whole suite: no worker process, container or SSH session of ours."""
    yield
    assert child_processes() == [], "processes outlived the test suite"
    assert _leftover_containers() == [], "containers outlived the test suite"
