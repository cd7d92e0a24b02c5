// Command word-count is the worker of the SDK's README: it serves "word-count"
// tasks to the dispatcher at ws://127.0.0.1:9876.
package main

import (
	"context"
	"strings"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
)

type Text struct {
	Text string `json:"text"`
}

func main() {
	w := triopipe.NewWorker(triopipe.Options{MaxConcurrency: 8})
	w.Handle("word-count", triopipe.Typed(func(ctx context.Context, in Text) (map[string]int, error) {
		return map[string]int{"words": len(strings.Fields(in.Text))}, nil
	}))
	triopipe.Exit(w.RunWebSocket(context.Background(), "ws://127.0.0.1:9876"))
}
