#!/usr/bin/env bash
# Ignores end of input and SIGTERM; only SIGKILL stops it. Leaves a child behind.
trap '' TERM
sleep 1000 &
echo "child $!" >&2
while true; do sleep 0.2; done
