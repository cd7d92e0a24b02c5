"""The configuration file of ``trio-pipe serve``: every key it takes, and every error,
each naming the key and the line it is on."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
from helpers import ROOT

from trio_pipe._serve_config import ConfigError, key_lines, line_of, load_config
from trio_pipe.auth import ApiAuth, TokenAuth, new_secret
from trio_pipe.dispatch import Restart, RestartPolicy
from trio_pipe.store import MemoryStore, Retention, SqliteStore

# -- where keys are written -------------------------------------------------------------


def test_key_lines_finds_tables_keys_and_dotted_keys() -> None:
    text = """# a comment
top = 1
[http]
listen = "127.0.0.1:8080"   # trailing comment
auth.secret_file = "s"
"quoted key" = 2
[workers.auth]
revocations = "r"
"""
    assert key_lines(text) == {
        ("top",): 2,
        ("http",): 3,
        ("http", "listen"): 4,
        ("http", "auth", "secret_file"): 5,
        ("http", "quoted key"): 6,
        ("workers", "auth"): 7,
        ("workers", "auth", "revocations"): 8,
    }


def test_key_lines_numbers_arrays_of_tables_and_their_subtables() -> None:
    text = """[[spawn]]
kind = "stdio"
[spawn.restart]
mode = "never"
[[spawn]]
kind = "docker"
[spawn.restart]
mode = "always"
"""
    lines = key_lines(text)
    assert lines[("spawn", 0, "kind")] == 2
    assert lines[("spawn", 0, "restart", "mode")] == 4
    assert lines[("spawn", 1)] == 5
    assert lines[("spawn", 1, "restart", "mode")] == 8


def test_key_lines_skips_what_is_inside_strings_and_multiline_values() -> None:
    text = '''a = """
b = 1
[not_a_table]
"""
c = [
  "d = 2",
  [3],
]
e = 'x = "#'  # f = 4
g = { h = 5 }
'''
    lines = key_lines(text)
    assert lines == {("a",): 1, ("c",): 5, ("e",): 9, ("g",): 10}
    # A key inside an inline table is placed at its enclosing key.
    assert line_of(lines, ("g", "h")) == 10
    assert line_of(lines, ("nowhere",)) is None


# -- a full configuration -----------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trio-pipe.toml"
    path.write_text(text)
    return path


def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(new_secret())
    return path


def test_an_empty_file_is_a_loopback_dispatcher_with_a_memory_store(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.dispatcher == {
        "host": "127.0.0.1", "port": 9876, "insecure": False, "ssl_context": None,
        "auth": None,
    }  # fmt: skip
    assert isinstance(config.store, MemoryStore)
    assert config.spawn == ()


def test_every_section_is_read(tmp_path: Path) -> None:
    secret = secret_file(tmp_path)
    config = load_config(
        write(
            tmp_path,
            f'''
[store]
url = "sqlite:///{tmp_path}/tasks.db"
retention_completed = "12h"
retention_failed = false

[workers]
listen = "[::1]:9000"
[workers.auth]
secret_file = "{secret}"
revocations = "{tmp_path}/revoked"

[http]
listen = "127.0.0.1:0"
auth = {{ secret_file = "{secret}" }}

[dispatcher]
shutdown_grace = "1m"
heartbeat_timeout = 20
max_lifetime_by_type = {{ render = "2h" }}

[limits]
max_frame_size = 1048576
handshake_timeout = "500ms"
max_consecutive_timeouts = false

[[spawn]]
kind = "stdio"
argv = ["./worker"]
tasks = ["resize"]
count = 2
[spawn.restart]
mode = "always"
backoff = "1s"

[[spawn]]
kind = "wasm"
module = "m.wasm"
tasks = ["hash"]
fuel = 1000
''',
        )
    )
    options = config.dispatcher
    assert (options["host"], options["port"]) == ("::1", 9000)
    assert isinstance(options["auth"], TokenAuth)
    assert options["http"] == ("127.0.0.1", 0)
    assert isinstance(options["http_auth"], ApiAuth)
    assert options["shutdown_grace"] == 60
    assert options["heartbeat_timeout"] == 20
    assert dict(options["max_lifetime_by_type"]) == {"render": 7200}
    assert options["max_frame_size"] == 1048576
    assert options["handshake_timeout"] == 0.5
    assert options["max_consecutive_timeouts"] is None
    assert isinstance(config.store, SqliteStore)
    assert config.store.retention == Retention(completed=12 * 3600, failed=None)
    stdio, wasm = config.spawn
    assert (stdio.kind, stdio.count) == ("stdio", 2)
    assert stdio.options["restart"] == RestartPolicy(mode=Restart.ALWAYS, backoff=1.0)
    assert wasm.options == {"tasks": ["hash"], "module": "m.wasm", "fuel": 1000}


def test_workers_tls_loads_the_certificate_and_requires_client_certificates(
    tmp_path: Path,
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = load_config(
        write(
            tmp_path,
            f'''
[workers.tls]
certfile = "{tmp_path}/server.pem"
client_cafile = "{tmp_path}/ca.pem"
''',
        )
    )
    context = config.dispatcher["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED


# -- every error names its key and line -------------------------------------------------

ERRORS = [
    ('[store]\nurl = "redis://x"\n', 2, "store.url", "unknown store"),
    ("[store]\nretention_failed = true\n", 2, "store.retention_failed", "expected a number"),
    ('[store]\nretention_completed = "soon"\n', 2, "store.retention_completed", "duration"),
    ('[workers]\nlisten = "nowhere"\n', 2, "workers.listen", "expected HOST:PORT"),
    ('[workers]\nlisten = "h:70000"\n', 2, "workers.listen", "expected HOST:PORT"),
    ("[workers]\ninsecure = 1\n", 2, "workers.insecure", "expected true or false"),
    ('[workers.tls]\nkeyfile = "k"\n', 1, "workers.tls", "missing key 'certfile'"),
    ('[workers.tls]\ncertfile = "/nonexistent"\n', 2, "workers.tls.certfile", "no such file"),
    ('[workers.auth]\nsecret_file = "/nonexistent"\n', 2, "workers.auth.secret_file", "no such file"),
    ("[workers.auth]\nrevocations = 3\n", 1, "workers.auth", "missing key 'secret_file'"),
    ("[http]\ninsecure = true\n", 1, "http", "give listen"),
    ("[http]\nlisten = 8080\n", 2, "http.listen", "expected a string"),
    ("[dispatcher]\nshutdown_grace = -1\n", 2, "dispatcher.shutdown_grace", ">= 0"),
    ('[dispatcher]\nheartbeat_timeout = "fast"\n', 2, "dispatcher.heartbeat_timeout", "duration"),
    ("[dispatcher]\nmax_queued = 1.5\n", 2, "dispatcher.max_queued", "must be an int"),
    ("[dispatcher]\nmax_frame_size = 10\n", 2, "dispatcher.max_frame_size", "unknown key"),
    ("[limits]\nmax_unregistered = 0\n", 2, "limits.max_unregistered", "must be >= 1"),
    ("[limits]\nhandshake_timeout = 0\n", 2, "limits.handshake_timeout", "> 0"),
    ("[limits]\n\n\nmax_tags = true\n", 4, "limits.max_tags", "must be an int"),
    ("stores = 1\n", 1, "stores", "unknown key"),
    ("store = 1\n", 1, "store", "expected a table"),
    ("[[spawn]]\ntasks = ['t']\n", 1, "spawn[0]", "missing key 'kind'"),
    ("[[spawn]]\nkind = 'fork'\n", 2, "spawn[0].kind", "expected one of stdio, docker"),
    ("[[spawn]]\nkind = 'stdio'\nargv = ['w']\n", 1, "spawn[0]", "missing key 'tasks'"),
    ("[[spawn]]\nkind = 'stdio'\ntasks = []\nargv = ['w']\n", 3, "spawn[0].tasks", "at least one"),
    ("[[spawn]]\nkind = 'stdio'\ntasks = ['t']\nargv = 'w'\n", 4, "spawn[0].argv", "array of strings"),
    ("[[spawn]]\nkind = 'stdio'\ntasks = ['t']\nargv = ['w']\nimage = 'x'\n", 5, "spawn[0].image", "unknown key"),
    ("[[spawn]]\nkind = 'stdio'\ntasks = ['t']\nargv = ['']\n", 4, "spawn[0].argv", "argv"),
    ("[[spawn]]\nkind = 'stdio'\ntasks = ['t']\nargv = ['w']\nenv = { 'A=B' = 'c' }\n", 5, "spawn[0].env", "env"),
    ("[[spawn]]\nkind = 'docker'\ntasks = ['t']\nimage = 'bad image'\n", 4, "spawn[0].image", "image"),
    ("[[spawn]]\nkind = 'docker'\ntasks = ['t']\nimage = 'i'\ncpus = 'two'\n", 5, "spawn[0].cpus", "expected a number"),
    ("[[spawn]]\nkind = 'ssh'\ntasks = ['t']\nhost = 'h'\nuser = 'u'\ncommand = 'w'\n", 1, "spawn[0]", "missing key 'known_hosts'"),
    ("[[spawn]]\nkind = 'wasm'\ntasks = ['t']\nmodule = 'm'\n[spawn.restart]\nmode = 'always'\n", 5, "spawn[0].restart", "unknown key"),
    ("[[spawn]]\nkind = 'stdio'\ntasks = ['t']\nargv = ['w']\n[[spawn]]\nkind = 'stdio'\ntasks = ['t']\nargv = ['w']\n[spawn.restart]\nmode = 'sometimes'\n", 10, "spawn[1].restart.mode", "expected one of never, on-failure, always"),
    ("[[spawn]]\nkind = 'stdio'\ntasks = ['t']\nargv = ['w']\ncount = 2\nworker_id = 'w'\n", 5, "spawn[0].count", "share one worker_id"),
    ("[[spawn]]\nkind = 'stdio'\ntasks = ['t']\nargv = ['w']\ncount = 0\n", 5, "spawn[0].count", "at least 1"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "key", "message"), ERRORS)
def test_every_error_names_the_key_and_the_line(
    tmp_path: Path, text: str, line: int, key: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert (error.line, error.key) == (line, key), str(error)
    assert str(error).startswith(f"{path}:{line}: {key}: ")
    assert message in str(error)


def test_a_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[http]\nlisten = "127.0.0.1:8080\n')
    with pytest.raises(ConfigError, match=rf"^{path}:2: not valid TOML: "):
        load_config(path)


def test_an_unreadable_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"missing\.toml: cannot read it: FileNotFoundError"
    ):
        load_config(tmp_path / "missing.toml")


def test_a_bad_secret_names_the_secret_file(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("tooshort")
    path = write(
        tmp_path, f'[http]\nlisten = "127.0.0.1:0"\n[http.auth]\nsecret_file = "{short}"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.line, caught.value.key) == (4, "http.auth.secret_file")


def test_the_example_in_docs_serve_md_is_valid(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    text = (ROOT / "docs" / "serve.md").read_text()
    example = re.search(r"```toml\n(.*?)```", text, re.DOTALL)
    assert example is not None
    # Its files, made in a temporary directory.
    ca = trustme.CA()
    ca.issue_cert("dispatcher.example.com").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    for name in ("worker.secret", "api.secret"):
        (tmp_path / name).write_text(new_secret())
    (tmp_path / "known_hosts").write_text("")
    toml = example[1].replace("/etc/trio-pipe/", f"{tmp_path}/")
    toml = toml.replace("/var/lib/trio-pipe/", f"{tmp_path}/")
    config = load_config(write(tmp_path, toml))
    assert [(worker.kind, worker.count) for worker in config.spawn] == [
        ("stdio", 2), ("docker", 1), ("ssh", 1), ("wasm", 1),
    ]  # fmt: skip
    assert config.dispatcher["http"] == ("127.0.0.1", 8080)
    assert isinstance(config.store, SqliteStore)


def test_unknown_keys_list_every_key_the_table_takes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[limits]\nmax_tag = 3\n"))
    assert str(caught.value).endswith(
        "limits.max_tag: unknown key (known here: handshake_timeout, max_connections, "
        "max_consecutive_timeouts, max_frame_size, max_json_depth, max_name_length, "
        "max_outbox_size, max_tags, max_task_types, max_unregistered, "
        "max_worker_concurrency)"
    )


def test_a_certificate_that_cannot_be_loaded_names_its_key(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    path = write(tmp_path, f'[workers.tls]\n\ncertfile = "{garbage}"\n')
    with pytest.raises(ConfigError, match="cannot load it: SSLError") as caught:
        load_config(path)
    assert (caught.value.line, caught.value.key) == (3, "workers.tls.certfile")


def test_a_client_ca_that_cannot_be_loaded_names_its_key(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    trustme.CA().issue_cert("x").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    (tmp_path / "ca.pem").write_text("not a CA")
    path = write(
        tmp_path,
        f'[workers.tls]\ncertfile = "{tmp_path}/server.pem"\n'
        f'client_cafile = "{tmp_path}/ca.pem"\n',
    )
    with pytest.raises(ConfigError, match="cannot load it: SSLError") as caught:
        load_config(path)
    assert (caught.value.line, caught.value.key) == (3, "workers.tls.client_cafile")


def test_key_lines_reads_escapes_and_non_ascii_in_quoted_keys() -> None:
    text = '[t]\n"caf\\u00e9" = 1\n"naïve" = 2\n\'lit\\eral\' = 3\n'
    assert key_lines(text) == {
        ("t",): 1,
        ("t", "café"): 2,
        ("t", "naïve"): 3,
        ("t", "lit\\eral"): 4,
    }
