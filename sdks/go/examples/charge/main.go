// Command charge is the worker of the SDK README's section on idempotency keys and
// fencing tokens: its "charge" handler passes both on to the payment service it
// calls, so that a task tried twice charges once, and a try that the dispatcher has
// given up on cannot write over a newer one. It serves the dispatcher at
// ws://127.0.0.1:9876.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
)

// paymentsURL is the payment service this worker writes to.
const paymentsURL = "http://127.0.0.1:8080/charges"

type Order struct {
	ID     string `json:"id"`
	Amount int    `json:"amount"`
}

func charge(ctx context.Context, order Order) (json.RawMessage, error) {
	body, err := json.Marshal(order)
	if err != nil {
		return nil, err
	}
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, paymentsURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	request.Header.Set("Content-Type", "application/json")
	task, _ := triopipe.TaskFromContext(ctx)
	m := task.Metadata
	if m.IdempotencyKey != nil {
		request.Header.Set("Idempotency-Key", *m.IdempotencyKey) // the same on every try: one charge
	}
	if m.Epoch != nil && m.Attempt != nil {
		// Each try of the task has a larger (epoch, attempt) than the one before it:
		// the service refuses a write whose token is older than one it has seen.
		request.Header.Set("Fencing-Token", fmt.Sprintf("%d.%d", *m.Epoch, *m.Attempt))
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	receipt, err := io.ReadAll(response.Body)
	switch {
	case err != nil:
		return nil, err
	case response.StatusCode == http.StatusConflict: // a newer try holds the order
		return nil, &triopipe.TaskFailure{Code: "SUPERSEDED", Message: "a newer try of this task has written"}
	case response.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("payment service: %s", response.Status)
	}
	return receipt, nil
}

func main() {
	w := triopipe.NewWorker(triopipe.Options{})
	w.Handle("charge", triopipe.Typed(charge))
	triopipe.Exit(w.RunWebSocket(context.Background(), "ws://127.0.0.1:9876"))
}
