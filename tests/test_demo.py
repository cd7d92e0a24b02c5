"""`trio-pipe demo`, as README's first command runs it (smaller)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT, child_processes


@pytest.mark.slow
def test_the_demo_resolves_every_task_and_leaves_no_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trio_pipe", "--log-level", "WARNING", "demo", "--tasks=90"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "all 90 tasks resolved" in done.stdout
    assert "killing worker demo-0" in done.stdout
    assert "all worker processes have exited. Done." in done.stdout
    assert child_processes() == []
