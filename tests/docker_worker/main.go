// A stdio worker for the Docker tests: a static binary, the only file in its image.
// Tasks: "echo" returns its payload, "sleep" sleeps payload.seconds, "alloc" touches
// payload.mb megabytes (to meet a memory limit), "whoami" returns the container's
// hostname. Exits on Shutdown or end of input.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

type message struct {
	Type string `json:"type"`
	Task struct {
		ID       string          `json:"id"`
		TaskType string          `json:"taskType"`
		Payload  json.RawMessage `json:"payload"`
	} `json:"task"`
}

type result struct {
	TaskID  string `json:"taskId"`
	Status  string `json:"status"`
	Payload any    `json:"payload"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var m message
		if err := json.Unmarshal(in.Bytes(), &m); err != nil {
			fmt.Fprintln(os.Stderr, "bad line:", err)
			continue
		}
		if m.Type == "Shutdown" {
			return
		}
		if m.Type != "TaskDispatch" {
			continue
		}
		var args struct {
			Seconds float64 `json:"seconds"`
			MB      int     `json:"mb"`
		}
		_ = json.Unmarshal(m.Task.Payload, &args)
		var payload any = m.Task.Payload
		switch m.Task.TaskType {
		case "sleep":
			time.Sleep(time.Duration(args.Seconds * float64(time.Second)))
		case "alloc":
			block := make([]byte, args.MB<<20)
			for i := range block {
				block[i] = byte(i)
			}
			payload = len(block)
		case "whoami":
			payload, _ = os.Hostname()
		}
		_ = out.Encode(map[string]any{
			"type":   "TaskResult",
			"result": result{TaskID: m.Task.ID, Status: "Completed", Payload: payload},
		})
	}
}
