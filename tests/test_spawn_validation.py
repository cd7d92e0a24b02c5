"""Hostile values never reach a process: spawn_* validate before anything runs.

The docker executable is set to a path that does not exist, so a value that got past
validation would surface as FileNotFoundError rather than InvalidSpec.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_pipe
from trio_pipe._validation import InvalidSpec

NO_DOCKER = "/nonexistent/docker"
METACHARACTERS = "`$(){};|&<>\n\r\0"
hostile = st.text(min_size=1, max_size=40).filter(
    lambda s: any(c in s for c in METACHARACTERS)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(["image", "env", "volume", "network", "user", "worker_id"]),
    value=hostile,
)
async def test_a_hostile_docker_value_is_refused_before_docker_runs(
    field: str, value: str
) -> None:
    options: dict[str, Any] = {"image": "busybox:1"}
    if field == "env":
        options["env"] = {"KEY": value}
    elif field == "volume":
        options["volumes"] = [f"/tmp:/x{value}"]
    else:
        options[field] = value
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(InvalidSpec):
            await d.spawn_docker(tasks=["x"], docker=NO_DOCKER, **options)
        assert d.workers() == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    worker_id=hostile,
    env_key=st.text(min_size=1, max_size=20).filter(lambda s: not s.isidentifier()),
)
async def test_a_hostile_stdio_value_is_refused_before_the_process_starts(
    worker_id: str, env_key: str
) -> None:
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(InvalidSpec):
            await d.spawn_stdio(["/nonexistent/worker"], ["x"], worker_id=worker_id)
        with pytest.raises(InvalidSpec):
            await d.spawn_stdio(["/nonexistent/worker"], ["x"], env={env_key: "v"})


async def test_a_valid_spec_gets_as_far_as_starting_docker() -> None:
    # The control: with valid values, the missing executable is what fails.
    async with trio_pipe.open_dispatcher(port=None) as d:
        with pytest.raises(FileNotFoundError):
            await d.spawn_docker("busybox:1", ["x"], docker=NO_DOCKER, env={"A": "b"})
