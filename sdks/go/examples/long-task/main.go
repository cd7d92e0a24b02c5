// Command long-task is the worker of the SDK README's section on long tasks: it
// serves "render" tasks, which report their progress and ask for more time, at
// most two at once, among up to 50 tasks in all, to the dispatcher at
// ws://127.0.0.1:9876.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
)

type Scene struct {
	Frames int `json:"frames"`
}

func render(ctx context.Context, scene Scene) (map[string]int, error) {
	for frame := 1; frame <= scene.Frames; frame++ {
		if err := renderFrame(ctx, frame); err != nil {
			return nil, err
		}
		triopipe.Progress(ctx, float64(frame)/float64(scene.Frames), fmt.Sprintf("frame %d of %d", frame, scene.Frames))
		triopipe.ExtendDeadline(ctx, time.Minute) // still going: one more minute from now
	}
	return map[string]int{"frames": scene.Frames}, nil
}

// renderFrame stands for real work: a second per frame, cancellably.
func renderFrame(ctx context.Context, frame int) error {
	select {
	case <-time.After(time.Second):
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

type Page struct {
	URL string `json:"url"`
}

func fetch(ctx context.Context, page Page) (map[string]int, error) {
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, page.URL, nil)
	if err != nil {
		return nil, err
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	return map[string]int{"status": response.StatusCode, "bytes": len(body)}, err
}

func main() {
	w := triopipe.NewWorker(triopipe.Options{
		MaxConcurrency:       50,
		MaxConcurrencyByType: map[string]int{"render": 2},
	})
	w.Handle("render", triopipe.Typed(render))
	w.Handle("fetch", triopipe.Typed(fetch))
	triopipe.Exit(w.RunWebSocket(context.Background(), "ws://127.0.0.1:9876"))
}
