"""A stdio worker with no SDK, for the SSH tests: each task's payload names an
environment variable, and the result is its value (or null) and the worker's pid."""

import json
import os
import sys

for line in sys.stdin:
    message = json.loads(line)
    if message["type"] == "Shutdown":
        break
    if message["type"] != "TaskDispatch":
        continue
    task = message["task"]
    result = {
        "taskId": task["id"],
        "status": "Completed",
        "payload": {"value": os.environ.get(task["payload"]), "pid": os.getpid()},
    }
    print(json.dumps({"type": "TaskResult", "result": result}), flush=True)
