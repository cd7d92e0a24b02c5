#!/usr/bin/env bash
# Builds and checks the Go SDK: fetches the dependencies, checks formatting and
# `go vet`, builds the conformance worker to bin/conformance-worker, and runs the
# unit tests once with the race detector. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# The Go toolchain at /usr/local/go comes first when there is one (an older `go`
# on the PATH, as Debian's, cannot build this module).
if [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi

go mod download
go mod verify
unformatted=$(gofmt -l .)
if [[ -n "$unformatted" ]]; then
  echo "gofmt -l: these files are not formatted:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go build -buildvcs=false -o bin/conformance-worker ./examples/conformance-worker
go test -race -count=1 ./...
