"""The HTTP API: submit, wait and inspect over HTTP, with API tokens.

Run it with ``python docs/examples/http_api.py`` (needs ``trio-pipe[http]`` and httpx).
"""

import httpx
import trio

import trio_pipe
from trio_pipe.auth import ApiAuth, new_secret
from trio_pipe.worker import Handlers, run_worker

handlers = Handlers()


@handlers.handler("word-count")
async def word_count(payload: dict[str, str]) -> int:
    return len(payload["text"].split())


async def main() -> None:
    auth = ApiAuth(new_secret())  # or ApiAuth.from_file("api.secret")
    admin = auth.create("admin", expires_in=3600, subject="deploy-bot")
    reader = auth.create("read", expires_in=3600, subject="grafana")
    async with (
        trio_pipe.open_dispatcher(http=("127.0.0.1", 0), http_auth=auth) as dispatcher,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(run_worker, dispatcher.url, handlers)
        async with httpx.AsyncClient(
            base_url=dispatcher.http_url, headers={"Authorization": f"Bearer {admin}"}
        ) as client:
            task = {"taskType": "word-count", "payload": {"text": "a b c"}}
            created = await client.post("/tasks", json={**task, "idempotencyKey": "doc-1"})
            print(created.status_code)  # 201
            again = await client.post("/tasks", json={**task, "idempotencyKey": "doc-1"})
            print(again.status_code, again.json()["id"] == created.json()["id"])  # 200 True

            url = f"/tasks/{created.json()['id']}/wait"
            done = (await client.get(url, params={"timeout": 30})).json()
            print(done["status"], done["result"]["payload"])  # Completed 3

            page = (await client.get("/tasks", params={"status": "Completed"})).json()
            print(len(page["tasks"]), page["next"])  # 1 None

            refused = await client.post(
                "/tasks", json=task, headers={"Authorization": f"Bearer {reader}"}
            )
            print(refused.status_code, refused.json()["error"])  # 403 FORBIDDEN

            metrics = (await client.get("/metrics")).text
            print("trio_pipe_task_outcomes_total" in metrics)  # True
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
