"""The public API: one place for every exception, every public name exported once."""

from __future__ import annotations

import inspect

import trio_pipe
import trio_pipe._errors
import trio_pipe.dispatch
import trio_pipe.protocol


def test_the_top_level_reexports_the_whole_trio_layer() -> None:
    assert set(trio_pipe._FROM_DISPATCH) == set(trio_pipe.dispatch.__all__)
    for name in trio_pipe.__all__:
        assert getattr(trio_pipe, name) is not None, name


def test_every_public_exception_is_a_trio_pipe_error_exported_at_the_top() -> None:
    errors = {
        name: value
        for name, value in vars(trio_pipe._errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    }
    errors.update(
        (name, getattr(trio_pipe.protocol, name))
        for name in trio_pipe.protocol.__all__
        if name.endswith("ProtocolError")
    )
    assert "InvalidSpec" in errors and "ChannelClosed" in errors
    for name, cls in errors.items():
        assert issubclass(cls, trio_pipe.TrioPipeError), name
        assert name in trio_pipe.__all__, f"{name} is not exported by trio_pipe"
        assert getattr(trio_pipe, name) is cls
