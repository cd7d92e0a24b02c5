"""A container as a worker. Run it with an image whose command speaks the stdio
contract, e.g. ``python docs/examples/docker/docker_worker.py my/worker-image:1 /worker``
(the Docker tests run it with their own image).
"""

import sys

import trio

import trio_pipe
from trio_pipe import RestartPolicy, Task


async def main(image: str, command: list[str]) -> None:
    async with trio_pipe.open_dispatcher(port=None) as dispatcher:
        worker_id = await dispatcher.spawn_docker(
            image,
            ["echo"],
            command=command,
            network="none",
            memory="64m",
            read_only=True,
            restart=RestartPolicy(max_restarts=3, window=60),
        )
        result = await dispatcher.run(Task.new("echo", {"from": "a container"}))
        print(worker_id.startswith("docker-"), result)  # True {'from': 'a container'}
    # Leaving the block stops the container and removes it.


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2:])
