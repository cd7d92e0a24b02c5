"""``trio_pipe._validation``: every value that reaches a worker process is checked first.

Table-driven accepts and rejects for each validator (realistic values and hostile ones:
command substitution, option injection, path traversal, newline/NUL injection, Unicode
lookalikes, empty and overlong values), then Hypothesis properties: for any input a
validator either raises ``InvalidSpec`` (never another exception, and with a short,
escaped message) or returns a value free of that field's forbidden characters.
"""

from __future__ import annotations

import ast
import pathlib
import pickle
import re
import types
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_pipe import _validation
from trio_pipe._validation import (
    InvalidSpec,
    validate_argv,
    validate_cpus,
    validate_docker_user,
    validate_env,
    validate_hostname,
    validate_image,
    validate_memory,
    validate_network,
    validate_path,
    validate_remote_command,
    validate_username,
    validate_volume,
    validate_worker_id,
)

SHA = "sha256:" + "0123456789abcdef" * 4
CYRILLIC_O = "\u043e"  # looks like Latin "o"
KELVIN = "\u212a"  # looks like "K", and "\u212a".lower() == "k"
FULLWIDTH_1 = "\uff11"


def check_accepts(validator: Callable[..., Any], value: object, expected: object) -> None:
    result = validator(value)
    assert result == expected
    assert type(result) is type(expected)


def check_rejects(
    validator: Callable[..., Any], value: object, field: str, fragment: str
) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as info:
        validator(value)
    message = str(info.value)
    assert message.startswith(field + " "), message
    assert fragment in message, message
    return info.value


# -- worker ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["w1", "worker-1.a_b", "0", "A" * 128, "trio.pipe-7"])
def test_worker_id_accepts(value: str) -> None:
    check_accepts(validate_worker_id, value, value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("w" * 129, "too long: 129 characters, at most 128"),
        ("-w", "must start with a letter or digit, not '-'"),
        (".hidden", "must start with a letter or digit"),
        ("_w", "must start with a letter or digit"),
        ("w 1", "contains ' ' at index 1"),
        ("w/../x", "contains '/' at index 1"),
        ("w$(reboot)", "contains '$' at index 1"),
        ("w\n", "contains '\\n' at index 1"),
        ("w\0", "contains '\\x00' at index 1"),
        (f"w{CYRILLIC_O}rker", "(U+043E) at index 1"),
        (None, "must be a str, not NoneType"),
        (b"w1", "must be a str, not bytes"),
    ],
)
def test_worker_id_rejects(value: object, fragment: str) -> None:
    check_rejects(validate_worker_id, value, "worker id", fragment)


# -- images -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "python:3.11-slim",
        f"ghcr.io/org/img@{SHA}",
        f"ghcr.io/org/img:1.2@{SHA}",
        "registry:5000/a/b:tag",
        "alpine",
        "my_org/my.image:v1.2.3",
        "localhost:5000/x",
        "a" * 256,
    ],
)
def test_image_accepts(value: str) -> None:
    check_accepts(validate_image, value, value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("a" * 257, "too long: 257 characters, at most 256"),
        ("--privileged", "must not start with '-' (it would be read as a docker option)"),
        ("-v/:/host", "must not start with '-'"),
        ("$(reboot)", "contains '$' at index 0"),
        ("alpine;rm -rf /", "contains ';' at index 6"),
        ("alpine`id`", "contains '`' at index 6"),
        ("alpine && id", "contains ' ' at index 6"),
        ("../../etc", "must not contain '..'"),
        ("a/../b", "must not contain '..'"),
        ("a..b", "must not contain '..'"),
        ("alpine\n--privileged", "contains '\\n' at index 6"),
        ("alpine\r", "contains '\\r' at index 6"),
        ("alpine\0", "contains '\\x00' at index 6"),
        (f"pyth{CYRILLIC_O}n:3", "(U+043E) at index 4"),
        ("python:3.11 slim", "contains ' '"),
        ("alpine,x", "contains ','"),
        (None, "must be a str"),
        (["alpine"], "must be a str, not list"),
    ],
)
def test_image_rejects(value: object, fragment: str) -> None:
    check_rejects(validate_image, value, "image", fragment)


# -- hostnames ----------------------------------------------------------------------------

LONGEST_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1",
        "::1",
        "host.example.org",
        "host.example.org.",
        "localhost",
        "a-b.c-d.example",
        "xn--bcher-kva.example",
        "2001:db8::1",
        "::ffff:192.0.2.1",
        "fe80::1%eth0",
        "fe80::1%3",
        "10.0.0.255",
        "1host.example",
        "a" * 63 + ".com",
        LONGEST_NAME,
    ],
)
def test_hostname_accepts(value: str) -> None:
    check_accepts(validate_hostname, value, value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("-oProxyCommand=x", "must not start with '-' (it would be read as an ssh option)"),
        ("-host.example", "must not start with '-'"),
        ("host;reboot", "contains ';' at index 4"),
        ("$(reboot)", "contains '$' at index 0"),
        ("host`id`", "contains '`'"),
        ("host\n", "contains '\\n' at index 4"),
        ("host\0", "contains '\\x00'"),
        ("host name", "contains ' '"),
        ("host_name.example", "contains '_'"),
        ("user@host", "contains '@'"),
        ("a..b", "empty label"),
        (".host", "empty label"),
        (".", "empty label"),
        ("host-.example", "starts or ends with '-'"),
        ("a.-b.example", "starts or ends with '-'"),
        ("a" * 64 + ".com", "label of 64 characters, at most 63"),
        (LONGEST_NAME + "d", "too long: 254 characters, at most 253"),
        ("1.2.3", "looks like an IPv4 address but is not a valid one"),
        ("01.2.3.4", "looks like an IPv4 address"),
        ("256.1.1.1", "looks like an IPv4 address"),
        ("123", "looks like an IPv4 address"),
        (f"127.0.0.{FULLWIDTH_1}", "(U+FF11)"),
        (f"h{CYRILLIC_O}st.example.org", "(U+043E) at index 1"),
        ("[::1]", "contains '['"),
        ("::1::2", "not a valid IPv6 address"),
        ("fe80::1%$(reboot)", "contains '$' at index 0"),
        ("fe80::1%", "empty IPv6 zone"),
        ("fe80::1%" + "e" * 65, "zone longer than 64"),
        ("::1;id", "contains ';'"),
        (None, "must be a str"),
        (127001, "must be a str, not int"),
    ],
)
def test_hostname_rejects(value: object, fragment: str) -> None:
    check_rejects(validate_hostname, value, "hostname", fragment)


# -- usernames ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["root", "deploy", "_svc", "a.b-c_d", "u" * 32, "git"])
def test_username_accepts(value: str) -> None:
    check_accepts(validate_username, value, value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("u" * 33, "too long: 33 characters, at most 32"),
        ("-oProxyCommand=x", "must not start with '-' (it would be read as an ssh option)"),
        ("user name", "contains ' '"),
        ("us$er", "contains '$'"),
        ("user@host", "contains '@'"),
        ("user:pass", "contains ':'"),
        ("user\n", "contains '\\n'"),
        (f"r{CYRILLIC_O}ot", "(U+043E)"),
        (0, "must be a str, not int"),
    ],
)
def test_username_rejects(value: object, fragment: str) -> None:
    check_rejects(validate_username, value, "username", fragment)


# -- environment --------------------------------------------------------------------------


def test_env_accepts_and_copies() -> None:
    env = {
        "PATH": "/usr/local/bin:/usr/bin",
        "_X1": "",
        "JAVA_OPTS": "-Xmx1g -Xms1g",
        "QUOTED": 'it\'s "quoted" \\ too',
        "TABBED": "a\tb",
        "UNICODE": "h\u00e9llo \u2713",
        "K" * 256: "v",
        "LONG": "v" * 32768,
    }
    result = validate_env(env)
    assert result == env
    assert type(result) is dict
    assert result is not env
    assert validate_env({}) == {}
    proxy = validate_env(types.MappingProxyType({"A": "b"}))
    assert proxy == {"A": "b"}
    assert type(proxy) is dict


@pytest.mark.parametrize(
    ("env", "field", "fragment"),
    [
        ({"1ABC": "x"}, "env key", "must be a letter or '_' followed by"),
        ({"A-B": "x"}, "env key", "must be a letter"),
        ({"A B": "x"}, "env key", "must be a letter"),
        ({"A=B": "x"}, "env key", "must be a letter"),
        ({"": "x"}, "env key", "must not be empty"),
        ({"K" * 257: "x"}, "env key", "too long: 257 characters, at most 256"),
        ({f"{KELVIN}EY": "x"}, "env key", "must be a letter"),
        ({"A;reboot": "x"}, "env key", "must be a letter"),
        ({1: "x"}, "env key", "must be a str, not int"),
        ({"K": "$(reboot)"}, "env value for 'K'", "shell metacharacter '$' at index 0"),
        ({"K": "${HOME}"}, "env value for 'K'", "shell metacharacter '$'"),
        ({"K": "`id`"}, "env value for 'K'", "shell metacharacter '`'"),
        ({"K": "a;b"}, "env value for 'K'", "shell metacharacter ';' at index 1"),
        ({"K": "a|b"}, "env value for 'K'", "shell metacharacter '|'"),
        ({"K": "a&b"}, "env value for 'K'", "shell metacharacter '&'"),
        ({"K": "<x"}, "env value for 'K'", "shell metacharacter '<'"),
        ({"K": ">x"}, "env value for 'K'", "shell metacharacter '>'"),
        ({"K": "(x)"}, "env value for 'K'", "shell metacharacter '('"),
        ({"K": "a\nB=c"}, "env value for 'K'", "control character '\\n' at index 1"),
        ({"K": "a\rb"}, "env value for 'K'", "control character '\\r'"),
        ({"K": "a\0b"}, "env value for 'K'", "control character '\\x00'"),
        ({"K": "\x1b[31m"}, "env value for 'K'", "control character '\\x1b'"),
        ({"K": "v" * 32769}, "env value for 'K'", "too long: 32769 characters"),
        ({"K": 1}, "env value for 'K'", "must be a str, not int"),
        ({"K": None}, "env value for 'K'", "must be a str, not NoneType"),
        ([("A", "b")], "env", "must be a mapping of str to str, not list"),
        ("A=b", "env", "must be a mapping of str to str, not str"),
        (None, "env", "must be a mapping"),
    ],
)
def test_env_rejects(env: object, field: str, fragment: str) -> None:
    check_rejects(validate_env, env, field, fragment)


# -- volumes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "/data:/data",
        "/host/path:/container/path:ro",
        "/a:/b:rw",
        "/srv/my dir:/mnt/my dir",
        "/:/host:ro",
        "/a..b:/c...:ro",
    ],
)
def test_volume_accepts(value: str) -> None:
    check_accepts(validate_volume, value, value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("data:/data", "host path 'data' must be absolute"),
        ("/a:b", "container path 'b' must be absolute"),
        ("/a", "not 1 ':'-separated parts"),
        ("/a:/b:/c:ro", "not 4 ':'-separated parts"),
        ("/a:/b:z", "has mode 'z'; expected 'ro' or 'rw'"),
        ("/a:/b:RO", "has mode 'RO'"),
        ("/a:/b:", "has mode ''"),
        ("../../etc:/x", "host path '../../etc' must be absolute"),
        ("/a/../../etc:/x", "host path must not contain a '..' segment"),
        ("/a:/b/..", "container path must not contain a '..' segment"),
        ("/a:/b,readonly", "forbidden character ','"),
        ("/a:/$(reboot)", "shell metacharacter '$' at index 4"),
        ("/a;rm -rf /:/b", "shell metacharacter ';'"),
        ("/a`id`:/b", "shell metacharacter '`'"),
        ("/a\n:/b", "control character '\\n' at index 2"),
        ("/a\0:/b", "control character '\\x00'"),
        ("/a\t:/b", "control character '\\t'"),
        ("/a:/" + "b" * 8192, "too long"),
        (None, "must be a str"),
    ],
)
def test_volume_rejects(value: object, fragment: str) -> None:
    check_rejects(validate_volume, value, "volume", fragment)


# -- remote commands ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "python3 -m worker",
        "worker --id w1 --url=ws://10.0.0.1:9000/ws",
        "/usr/bin/env python3 worker.py",
        "run\targs",
        "-leading-dash is the remote shells business",
        "node ./dist/worker.js ~/cfg *.json",
    ],
)
def test_remote_command_accepts(value: str) -> None:
    check_accepts(validate_remote_command, value, value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("   \t", "must not be only whitespace"),
        ("$(reboot)", "shell metacharacter '$' at index 0"),
        ("worker;rm -rf /", "shell metacharacter ';' at index 6"),
        ("worker `id`", "shell metacharacter '`'"),
        ("worker && id", "shell metacharacter '&'"),
        ("worker | nc x 1", "shell metacharacter '|'"),
        ("worker > /etc/passwd", "shell metacharacter '>'"),
        ("worker < /dev/zero", "shell metacharacter '<'"),
        ("worker ${IFS}id", "shell metacharacter '$'"),
        ("(worker)", "shell metacharacter '('"),
        ("{worker,id}", "shell metacharacter '{'"),
        ("echo 'x'", 'forbidden character "\'"'),
        ('echo "x"', "forbidden character '\"'"),
        ("echo \\x", "forbidden character '\\\\'"),
        ("worker\nid", "control character '\\n' at index 6"),
        ("worker\rid", "control character '\\r'"),
        ("worker\0id", "control character '\\x00'"),
        ("w" * 32769, "too long: 32769 characters"),
        (["python3", "-m", "worker"], "must be a str, not list"),
    ],
)
def test_remote_command_rejects(value: object, fragment: str) -> None:
    check_rejects(validate_remote_command, value, "remote command", fragment)


# -- argv ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["python"], ["python"]),
        (("python", "-m", "worker"), ["python", "-m", "worker"]),
        (["sh", ""], ["sh", ""]),
        # No shell is involved: metacharacters, quotes, newlines are inert.
        (
            ["python", "-c", "print('$(x)'); `id` | cat > /x & {a}\n"],
            ["python", "-c", "print('$(x)'); `id` | cat > /x & {a}\n"],
        ),
        (["ls", "a b", "--", "-rf"], ["ls", "a b", "--", "-rf"]),
    ],
)
def test_argv_accepts(argv: object, expected: list[str]) -> None:
    result = validate_argv(argv)
    assert result == expected
    assert type(result) is list
    assert result is not argv


@pytest.mark.parametrize(
    ("argv", "field", "fragment"),
    [
        ("ls -l", "argv", "must be a list of strings, not one string"),
        (b"ls", "argv", "must be a list of strings, not bytes"),
        (bytearray(b"ls"), "argv", "must be a list of strings, not bytearray"),
        (None, "argv", "must be a list of strings, not NoneType"),
        (42, "argv", "must be a list of strings, not int"),
        ({"ls": 1}, "argv", "must be a list of strings, not dict"),
        (iter(["ls"]), "argv", "must be a list of strings, not list_iterator"),
        ([], "argv", "must not be empty"),
        ([""], "argv[0]", "(the program) must not be empty"),
        (["ls", None], "argv[1]", "must be a str, not NoneType"),
        ([pathlib.Path("/bin/ls")], "argv[0]", "must be a str, not"),
        (["ls\0"], "argv[0]", "contains NUL at index 2"),
        (["ls", "a\0b"], "argv[1]", "contains NUL at index 1"),
    ],
)
def test_argv_rejects(argv: object, field: str, fragment: str) -> None:
    check_rejects(validate_argv, argv, field, fragment)


def test_argv_rejects_a_string_with_the_documented_message() -> None:
    with pytest.raises(InvalidSpec, match="argv must be a list of strings, not one string"):
        validate_argv("python -m worker")


# -- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/usr/bin/python", "/usr/bin/python"),
        ("relative/dir", "relative/dir"),
        ("./x", "./x"),
        ("a..b/c", "a..b/c"),
        ("...", "..."),
        ("/tmp/x..", "/tmp/x.."),
        ("/with space/$(x)", "/with space/$(x)"),
        (pathlib.Path("/tmp/x"), "/tmp/x"),
        (pathlib.PurePosixPath("a/b"), "a/b"),
        ("p" * 4096, "p" * 4096),
    ],
)
def test_path_accepts(value: object, expected: str) -> None:
    check_accepts(validate_path, value, expected)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("..", "must not contain a '..' segment"),
        ("../../etc", "'..' segment"),
        ("/a/../b", "'..' segment"),
        ("a/..", "'..' segment"),
        ("a\\..\\b", "'..' segment"),
        (pathlib.PurePosixPath("../x"), "'..' segment"),
        ("/a\0b", "contains NUL at index 2"),
        ("p" * 4097, "too long: 4097 characters, at most 4096"),
        (b"/tmp", "must be a str, not bytes"),
        (None, "must be a str, not NoneType"),
    ],
)
def test_path_rejects(value: object, fragment: str) -> None:
    check_rejects(validate_path, value, "path", fragment)


def test_path_rejects_a_pathlike_that_gives_bytes() -> None:
    class BytesPath:
        def __fspath__(self) -> bytes:
            return b"/tmp"

    check_rejects(validate_path, BytesPath(), "path", "must be a str, not bytes")


# -- memory -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("256m", "256m"),
        ("1g", "1g"),
        ("6144k", "6144k"),
        ("512M", "512m"),
        ("2G", "2g"),
        ("0256m", "256m"),
        ("6291456", "6291456"),
        ("6291456b", "6291456b"),
        (6 * 1024 * 1024, "6291456"),
        (2**33, "8589934592"),
        (2**63 - 1, str(2**63 - 1)),
    ],
)
def test_memory_accepts(value: object, expected: str) -> None:
    check_accepts(validate_memory, value, expected)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("512k", "must be at least 6291456 bytes (6 MiB)"),
        ("5m", "at least 6291456 bytes"),
        (6 * 1024 * 1024 - 1, "at least 6291456 bytes"),
        (0, "at least"),
        (-1, "at least"),
        (2**63, "must be at most 9223372036854775807 bytes"),
        ("9999999999g", "must be at most"),
        pytest.param(10**5000, "at most", id="huge-int"),
        ("", "must be digits and an optional unit"),
        ("m", "must be digits"),
        ("1.5g", "must be digits"),
        ("256 m", "must be digits"),
        ("256mb", "must be digits"),
        ("1t", "must be digits"),
        ("-256m", "must be digits"),
        ("256m\n", "must be digits"),
        (f"6144{KELVIN}", "must be digits"),
        ("\uff12\uff15\uff16m", "must be digits"),
        ("256m;reboot", "must be digits"),
        ("9" * 25, "too long to be a memory size"),
        (True, "not bool"),
        (1.5e9, "not float"),
        (None, "not NoneType"),
    ],
)
def test_memory_rejects(value: object, fragment: str) -> None:
    check_rejects(validate_memory, value, "memory", fragment)


# -- cpus ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1"),
        (0.5, "0.5"),
        (2.0, "2"),
        (0.01, "0.01"),
        (100, "100"),
        (1024, "1024"),
        ("1.5", "1.5"),
        ("100", "100"),
        ("0.000000001", "0.000000001"),
        ("1.5000000000", "1.5"),
        ("0001.25", "1.25"),
        (1e-9, "0.000000001"),
    ],
)
def test_cpus_accepts(value: object, expected: str) -> None:
    check_accepts(validate_cpus, value, expected)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (0, "must be positive"),
        (-1, "must be positive"),
        (0.0, "must be positive"),
        ("0", "must be positive"),
        (1024.5, "must be at most 1024"),
        (1025, "must be at most 1024"),
        pytest.param(10**5000, "must be at most 1024", id="huge-int"),
        (float("nan"), "must be a finite number"),
        (float("inf"), "must be a finite number"),
        (float("-inf"), "must be a finite number"),
        ("1.0000000001", "too precise: at most 9 decimal places"),
        (1e-10, "too precise"),
        (0.1 + 0.2, "too precise"),
        ("1e3", "must be a decimal number"),
        ("-1", "must be a decimal number"),
        ("", "must be a decimal number"),
        ("1,5", "must be a decimal number"),
        (" 1", "must be a decimal number"),
        ("1.", "must be a decimal number"),
        ("\u0661", "must be a decimal number"),
        ("1" * 33, "must be a decimal number"),
        ("2;reboot", "must be a decimal number"),
        (True, "not bool"),
        (None, "not NoneType"),
        (Decimal("1"), "not Decimal"),
    ],
)
def test_cpus_rejects(value: object, fragment: str) -> None:
    check_rejects(validate_cpus, value, "cpus", fragment)


# -- networks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["none", "host", "bridge", "my-net", "my_net.v2", "_private", "N" * 128]
)
def test_network_accepts(value: str) -> None:
    check_accepts(validate_network, value, value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("n" * 129, "too long: 129 characters, at most 128"),
        ("--privileged", "must not start with '-' (it would be read as a docker option)"),
        ("container:web", "contains ':' at index 9"),
        ("net work", "contains ' '"),
        ("net;reboot", "contains ';'"),
        ("$(reboot)", "contains '$'"),
        ("net\n", "contains '\\n'"),
        (f"n{CYRILLIC_O}ne", "(U+043E)"),
        (None, "must be a str"),
    ],
)
def test_network_rejects(value: object, fragment: str) -> None:
    check_rejects(validate_network, value, "network", fragment)


# -- the exception and its messages -------------------------------------------------------


def test_invalid_spec_is_a_value_error_with_field_and_reason() -> None:
    error = check_rejects(validate_image, "--privileged", "image", "must not start")
    assert isinstance(error, ValueError)
    assert error.field == "image"
    assert error.reason.startswith("must not start with '-'")
    assert error.shown == "'--privileged'"
    assert str(error) == (
        "image must not start with '-' (it would be read as a docker option)"
        " (got '--privileged')"
    )


def test_invalid_spec_pickles() -> None:
    with pytest.raises(InvalidSpec) as info:
        validate_hostname("host;reboot")
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is InvalidSpec
    assert str(clone) == str(info.value)
    assert (clone.field, clone.reason, clone.shown) == (
        info.value.field,
        info.value.reason,
        info.value.shown,
    )


def test_field_can_be_renamed() -> None:
    check_rejects(
        lambda v: validate_path(v, field="working directory"),
        "../x",
        "working directory",
        "'..' segment",
    )
    check_rejects(lambda v: validate_hostname(v, field="ssh host"), "-x", "ssh host", "'-'")
    check_rejects(
        lambda v: validate_env(v, field="docker env"),
        {"K": "$x"},
        "docker env value",
        "'$'",
    )


HOSTILE = "$(reboot)\n" + "A" * 10_000 + "\0"

HOSTILE_CALLS: list[Callable[[], object]] = [
    lambda: validate_worker_id(HOSTILE),
    lambda: validate_image(HOSTILE),
    lambda: validate_hostname(HOSTILE),
    lambda: validate_hostname("::1%" + HOSTILE),
    lambda: validate_username(HOSTILE),
    lambda: validate_env({HOSTILE: "v"}),
    lambda: validate_env({"K": HOSTILE}),
    lambda: validate_volume(HOSTILE),
    lambda: validate_remote_command(HOSTILE),
    lambda: validate_argv(HOSTILE),
    lambda: validate_argv(["ls", HOSTILE]),
    lambda: validate_path(HOSTILE),
    lambda: validate_memory(HOSTILE),
    lambda: validate_cpus(HOSTILE),
    lambda: validate_network(HOSTILE),
]


@pytest.mark.parametrize("call", HOSTILE_CALLS)
def test_messages_show_a_short_escaped_prefix_of_the_value(
    call: Callable[[], object],
) -> None:
    with pytest.raises(InvalidSpec) as info:
        call()
    message = str(info.value)
    assert len(message) < 400, message
    assert "\n" not in message and "\0" not in message
    assert "A" * 65 not in message
    assert "$(reboot)\\n" in message


def test_str_subclasses_cannot_lie_to_the_checks() -> None:
    class Liar(str):
        def __contains__(self, item: object) -> bool:
            return False

        def __iter__(self) -> Any:
            return iter("safe")

        def startswith(self, *args: Any) -> bool:
            return False

        def split(self, *args: Any) -> Any:
            return ["safe"]

    for call in (validate_image, validate_hostname, validate_network, validate_volume):
        with pytest.raises(InvalidSpec):
            call(Liar("--privileged;$(reboot)/../.."))
    with pytest.raises(InvalidSpec):
        validate_remote_command(Liar("id;reboot"))
    result = validate_image(Liar("alpine"))
    assert result == "alpine"
    assert type(result) is str


def test_module_does_not_import_trio() -> None:
    tree = ast.parse(pathlib.Path(_validation.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert not {name for name in imported if name.split(".")[0].startswith("trio")}
    assert not imported & {"subprocess", "socket", "asyncio", "asyncssh", "io"}


# -- properties ---------------------------------------------------------------------------

SHELL_META = set("`$(){};|&<>")
CONTROLS = {chr(c) for c in range(0x20)} | {"\x7f"}
# Characters a hostile value would use, Unicode lookalikes included, so the generated
# text reaches past the first check of each validator.
NASTY = "`$(){};|&<>'\"\\\n\r\0\t\x1b ,:%@/.-_=~*" + CYRILLIC_O + KELVIN + FULLWIDTH_1


def texts(*regexes: str, alphabet: str = "") -> st.SearchStrategy[str]:
    """Arbitrary text, text over a field-ish alphabet plus NASTY, and valid-looking
    values (so the accepting path is exercised as well)."""
    field_ish = st.text(
        alphabet=st.sampled_from("abcXYZ0129" + alphabet + NASTY), max_size=40
    )
    return st.one_of(
        st.text(max_size=80),
        field_ish,
        *(st.from_regex(regex, fullmatch=True) for regex in regexes),
    )


def no_dotdot_segment(path: str) -> bool:
    return ".." not in re.split(r"[/\\]", path)


def ok_worker_id(out: Any) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", out) is not None


def ok_image(out: Any) -> bool:
    return (
        re.fullmatch(r"[A-Za-z0-9._/:@][A-Za-z0-9._/:@-]{0,255}", out) is not None
        and ".." not in out
    )


def ok_hostname(out: Any) -> bool:
    # DNS names and IP literals: no shell, option or whitespace characters at all.
    return (
        re.fullmatch(r"[A-Za-z0-9.:%_][A-Za-z0-9.:%_-]{0,252}", out) is not None
        and "_" not in out.partition("%")[0]
    )


def ok_username(out: Any) -> bool:
    return re.fullmatch(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,31}", out) is not None


def ok_env(out: Any) -> bool:
    return type(out) is dict and all(
        re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,255}", k) is not None
        and not (set(v) & (SHELL_META | (CONTROLS - {"\t"})))
        for k, v in out.items()
    )


def ok_volume(out: Any) -> bool:
    host, container, *mode = out.split(":")
    return (
        not (set(out) & (SHELL_META | CONTROLS | {","}))
        and host.startswith("/")
        and container.startswith("/")
        and mode in ([], ["ro"], ["rw"])
        and no_dotdot_segment(host)
        and no_dotdot_segment(container)
    )


def ok_remote_command(out: Any) -> bool:
    return (
        out.strip() != ""
        and not (set(out) & (SHELL_META | (CONTROLS - {"\t"}) | set("'\"\\")))
        and len(out) <= 32768
    )


def ok_argv(out: Any) -> bool:
    return (
        type(out) is list
        and len(out) > 0
        and out[0] != ""
        and all(type(a) is str and "\0" not in a for a in out)
    )


def ok_path(out: Any) -> bool:
    return out != "" and "\0" not in out and no_dotdot_segment(out)


UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def ok_memory(out: Any) -> bool:
    match = re.fullmatch(r"([0-9]+)([bkmg]?)", out)
    return match is not None and 6 * 1024**2 <= int(match[1]) * UNITS[match[2]] < 2**63


def ok_cpus(out: Any) -> bool:
    return (
        re.fullmatch(r"(0|[1-9][0-9]{0,3})(\.[0-9]{0,8}[1-9])?", out) is not None
        and 0 < Decimal(out) <= 1024
    )


def ok_network(out: Any) -> bool:
    return re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,127}", out) is not None


HOSTNAMES = r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){0,3}"

# (validator, strategy of str-only inputs, property of every returned value)
STR_CASES: dict[str, tuple[Callable[[Any], Any], st.SearchStrategy[Any], Any]] = {
    "worker_id": (
        validate_worker_id,
        texts(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}"),
        ok_worker_id,
    ),
    "image": (
        validate_image,
        texts(r"[a-z0-9.]{1,10}(:[0-9]{1,4})?(/[a-z0-9._-]{1,8}){0,3}(:[a-z0-9.]{1,6})?"),
        ok_image,
    ),
    "hostname": (
        validate_hostname,
        st.one_of(texts(HOSTNAMES), st.ip_addresses().map(str)),
        ok_hostname,
    ),
    "username": (validate_username, texts(r"[a-z_][a-z0-9._-]{0,31}"), ok_username),
    "env": (
        validate_env,
        st.dictionaries(
            texts(r"[A-Za-z_][A-Za-z0-9_]{0,8}"), texts(r"[ -~]{0,20}"), max_size=4
        ),
        ok_env,
    ),
    "volume": (
        validate_volume,
        texts(r"(/[a-z.]{0,4}){1,3}:(/[a-z.]{0,4}){1,3}(:ro|:rw)?", alphabet="/:"),
        ok_volume,
    ),
    "remote_command": (
        validate_remote_command,
        texts(r"[a-z./-]{1,8}( [a-z0-9=./-]{1,8}){0,3}"),
        ok_remote_command,
    ),
    "argv": (validate_argv, st.lists(texts(), max_size=4) | texts(), ok_argv),
    "path": (
        validate_path,
        texts(r"/?[a-z.]{0,4}(/[a-z.]{0,4}){0,3}", alphabet="/"),
        ok_path,
    ),
    "memory": (
        validate_memory,
        texts(r"[0-9]{1,12}[bkmgBKMG]?", alphabet="bkmgBKMG"),
        ok_memory,
    ),
    "cpus": (validate_cpus, texts(r"[0-9]{1,5}(\.[0-9]{1,11})?"), ok_cpus),
    "network": (validate_network, texts(r"[a-z_.][a-z0-9_.-]{0,10}"), ok_network),
}

NON_STR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=10),
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.integers() | st.none(), st.text(max_size=5), max_size=2),
    st.tuples(st.integers()),
    st.builds(object),
    st.decimals(allow_nan=True),
)

prop = settings(max_examples=150, deadline=None)


@pytest.mark.parametrize("name", STR_CASES)
@prop
@given(data=st.data())
def test_str_input_raises_invalid_spec_or_returns_a_safe_value(
    name: str, data: st.DataObject
) -> None:
    validator, strategy, is_safe = STR_CASES[name]
    value = data.draw(strategy, label="value")
    try:
        out = validator(value)
    except InvalidSpec as error:
        message = str(error)
        assert not (set(message) & CONTROLS), message  # control characters are escaped
        assert len(message) < 600, message
        return
    assert is_safe(out), out
    assert validator(out) == out  # validated values are fixed points


@pytest.mark.parametrize("name", STR_CASES)
@prop
@given(value=NON_STR)
def test_non_str_input_raises_nothing_but_invalid_spec(name: str, value: object) -> None:
    validator, _strategy, is_safe = STR_CASES[name]
    try:
        out = validator(value)
    except InvalidSpec as error:
        assert len(str(error)) < 600
        return
    assert is_safe(out), out


@pytest.mark.parametrize("user", ["nobody", "65534", "65534:65534", "app:staff"])
def test_validate_docker_user_accepts_user_and_group(user: str) -> None:
    assert validate_docker_user(user) == user


@pytest.mark.parametrize("user", ["", "a:b:c", "root;id", "-u", ":x", "$(id)", "a b"])
def test_validate_docker_user_rejects(user: str) -> None:
    with pytest.raises(InvalidSpec, match=r"^user "):
        validate_docker_user(user)
