#!/usr/bin/env bash
# A stdio worker in bash, no SDK: read a task per line, answer with a TaskResult line.
# Start it from a dispatcher with:
#   await dispatcher.spawn_stdio(["bash", "docs/examples/bash-worker.sh"], tasks=["word-count"])
while IFS= read -r line; do
  task_id=$(echo "$line" | jq -r '.task.id')
  words=$(echo "$line" | jq -r '.task.payload.text // "" | split(" ") | map(select(. != "")) | length')
  echo "{\"type\":\"TaskResult\",\"result\":{\"taskId\":\"$task_id\",\"status\":\"Completed\",\"payload\":{\"words\":$words}}}"
done
