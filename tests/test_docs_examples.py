"""Every Python example under docs/examples runs and prints what its comments say."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import ROOT

EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_and_prints_what_it_promises(example) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    promised = re.findall(r"print\(.*\)\s+# (.+)", example.read_text())
    assert promised, f"{example.name} promises no output"
    for line in promised:
        assert line.strip() in done.stdout, (line, done.stdout)


@pytest.mark.parametrize(
    ("page_name", "name"),
    [
        ("getting-started.md", "quickstart.py"),
        ("getting-started.md", "typed_tasks.py"),
        ("scheduling.md", "scheduling.py"),
        ("durability.md", "durable.py"),
        ("http.md", "http_api.py"),
        ("security.md", "secure_workers.py"),
        ("stdio.md", "stdio_workers.py"),
        ("stdio.md", "bash-worker.sh"),
        ("docker.md", "docker/docker_worker.py"),
        ("ssh.md", "ssh/ssh_workers.py"),
        ("workflows.md", "workflows.py"),
    ],
)
def test_a_page_shows_its_example_as_it_is(page_name: str, name: str) -> None:
    page = (ROOT / "docs" / page_name).read_text()
    source = (ROOT / "docs" / "examples" / name).read_text().rstrip("\n")
    assert source in page, f"docs/{page_name} is out of date with {name}"


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(python3 -m venv .+)$", readme, flags=re.MULTILINE)
    assert len(commands) == 2, commands  # one for the demo, one for the tests
    assert commands[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_scheduling_snippets_are_lines_of_the_example() -> None:
    page = (ROOT / "docs" / "scheduling.md").read_text()
    source = {
        line.strip()
        for line in (ROOT / "docs/examples/scheduling.py").read_text().splitlines()
    }
    snippets = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)[:-1]  # last: whole
    assert len(snippets) >= 7
    for snippet in snippets:
        for line in snippet.splitlines():
            if line.strip() and not line.strip().startswith("# ..."):
                assert line.strip() in source, line
