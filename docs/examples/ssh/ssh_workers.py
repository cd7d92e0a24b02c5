"""SSH workers: two Python workers on a remote host, sharing one SSH connection.

    python docs/examples/ssh/ssh_workers.py HOST PORT USER KNOWN_HOSTS KEY

The remote host needs this Python (with trio-pipe) and this folder at the same paths:
its workers serve handlers.py from here. The tests run this file unchanged against an
sshd of their own on 127.0.0.1.
"""

import sys
from pathlib import Path

import trio

import trio_pipe

HERE = Path(__file__).resolve().parent
WORKER = [sys.executable, "-m", "trio_pipe", "worker", "--stdio"]


async def main(host: str, port: int, user: str, known_hosts: str, key: str) -> None:
    async with trio_pipe.open_dispatcher(port=None) as dispatcher:
        for worker_id in ("remote-1", "remote-2"):
            await dispatcher.spawn_ssh(
                host,
                [*WORKER, "--handlers", "handlers:HANDLERS"],  # each argument quoted
                ["word-count"],
                user=user,
                port=port,
                known_hosts=known_hosts,  # strict: the host's key must be in this file
                client_keys=[key],  # the only key offered (no agent, no ~/.ssh/config)
                env={"PYTHONPATH": str(HERE)},  # quoted: env PYTHONPATH='...' python ...
                worker_id=worker_id,
            )
        texts = [{"text": "one two three"}, {"text": "four five"}, {"text": "six"}]
        async with dispatcher.map("word-count", texts) as batch:
            counts = [item.value["words"] async for item in batch]
        print(sorted(counts))  # [1, 2, 3]
        print(sorted(w.worker_id for w in dispatcher.workers()))  # ['remote-1', 'remote-2']
        print({w.transport for w in dispatcher.workers()})  # {'ssh'}


if __name__ == "__main__":
    host, port, user, known_hosts, key = sys.argv[1:]
    trio.run(main, host, int(port), user, known_hosts, key)
