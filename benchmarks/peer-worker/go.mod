module github.com/trio-pipe/trio-pipe/benchmarks/peer-worker

go 1.23

require github.com/coder/websocket v1.8.15
