"""Worker tokens: only a worker with a valid token, within its claims, gets tasks.

Run it with ``python docs/examples/secure_workers.py``.
"""

import tempfile
from functools import partial
from pathlib import Path

import trio

import trio_pipe
from trio_pipe import HandshakeRefused, RegistrationRefused, Task
from trio_pipe.auth import TokenAuth, new_secret, revoke
from trio_pipe.worker import run_worker


async def scan(payload: str) -> str:
    return f"scanned {payload}"


async def main(directory: Path) -> None:
    # What `trio-pipe token secret` and `trio-pipe token create` do, in Python.
    auth = TokenAuth(new_secret(), revocations=directory / "revoked-tokens")
    token = auth.create(expires_in=3600, task_types=["scan"], worker_id="scanner-*")

    async with (
        trio_pipe.open_dispatcher(auth=auth) as dispatcher,
        trio.open_nursery() as nursery,
    ):
        scanner = partial(
            run_worker,
            dispatcher.url,
            {"scan": scan},
            worker_id="scanner-1",
            token=token,  # or the TRIO_PIPE_TOKEN environment variable
        )
        await nursery.start(scanner)
        print(await dispatcher.run(Task.new("scan", "invoice.pdf")))  # scanned invoice.pdf

        # No token: refused in the handshake (HTTP 401), never reconnecting.
        try:
            await run_worker(dispatcher.url, {"scan": scan})
        except HandshakeRefused as refused:
            print(refused.status, refused.reason)  # 401 no Authorization header
        # A valid token, but a task type outside its claims: refused at registration.
        try:
            await run_worker(
                dispatcher.url, {"secret": scan}, worker_id="scanner-2", token=token
            )
        except RegistrationRefused as refused:
            print(refused.reason)  # task type 'secret' not allowed by its credentials

        # Revoked (`trio-pipe token revoke ID`): no new connection with that token.
        claims = auth.authenticate({"Authorization": f"Bearer {token}"}, None)
        assert claims.token_id is not None
        revoke(directory / "revoked-tokens", claims.token_id)
        try:
            await run_worker(dispatcher.url, {"scan": scan}, token=token)
        except HandshakeRefused as refused:
            print(refused.status, "revoked" in refused.reason)  # 401 True
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        trio.run(main, Path(directory))
