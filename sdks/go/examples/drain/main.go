// Command drain is the worker of the SDK README's section on stopping, inside a
// program that handles SIGTERM itself: it drains the worker with a grace of its own
// choosing, then carries on with the rest of its shutdown.
package main

import (
	"context"
	"encoding/json"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
)

func echo(_ context.Context, payload json.RawMessage) (json.RawMessage, error) {
	return payload, nil
}

func main() {
	w := triopipe.NewWorker(triopipe.Options{NoSignalHandler: true})
	w.Handle("echo", echo)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	go func() {
		<-signals
		w.Drain(10 * time.Second) // the tasks in flight get 10 s, then are cancelled and reported
	}()
	if err := w.RunWebSocket(context.Background(), "ws://127.0.0.1:9876"); err != nil {
		log.Fatal(err)
	}
	log.Print("the worker has drained; closing the rest of the program")
}
