"""A stdio worker with no SDK, for tests: echo, crash, hang, chatter on stdout/stderr."""

import json
import os
import sys

print("plain worker starting (a log line, not a message)", flush=True)
print(json.dumps({"level": "info", "msg": "JSON, but not a message"}), flush=True)
for line in sys.stdin:
    message = json.loads(line)
    if message["type"] == "Shutdown":
        sys.exit(0)
    if message["type"] != "TaskDispatch":
        continue
    task = message["task"]
    payload = task["payload"]
    if payload == "crash":
        print("crashing on purpose", file=sys.stderr, flush=True)
        os._exit(3)
    if payload == "hang":
        continue
    result = {
        "taskId": task["id"],
        "status": "Completed",
        "payload": {"echo": payload, "pid": os.getpid()},
    }
    print(json.dumps({"type": "TaskResult", "result": result}), flush=True)
