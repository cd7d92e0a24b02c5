package protocol_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

func TestCurrentLoadIsWrittenAsPythonWritesIt(t *testing.T) {
	for load, want := range map[float64]string{
		0: "0.0", 1: "1.0", 0.75: "0.75", 1.0 / 3: "0.3333333333333333", 12: "12.0",
		0.0001: "0.0001", 0.00001: "1e-05", 2.5e-7: "2.5e-07",
		1e15: "1000000000000000.0", 1e16: "1e+16", 1.2345678901234568e+17: "1.2345678901234568e+17",
	} {
		text, err := protocol.Encode(protocol.Backpressure{Signal: protocol.BackpressureSignal{WorkerID: "w", CurrentLoad: load}})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(text); !strings.Contains(got, `"currentLoad":`+want+`,`) {
			t.Errorf("%v written as %s, want %s", load, got, want)
		}
	}
}

func TestCanonicalize(t *testing.T) {
	got, err := protocol.Canonicalize([]byte(" { \"a\" : \"\\u00e9\\u2028<>&\\/\\u001f\" ,\n \"n\" : [ 1.50 , -0, 1E+2 ] } "))
	want := "{\"a\":\"é\u2028<>&/\\u001f\",\"n\":[1.50,-0,1E+2]}"
	if err != nil || string(got) != want {
		t.Errorf("got %s (%v), want %s", got, err, want)
	}
	for _, bad := range []string{``, `[`, `{"a":1e999}`, `[-1E400]`, "\"\xff\"", `1 2`} {
		if got, err := protocol.Canonicalize([]byte(bad)); err == nil {
			t.Errorf("%q accepted as %s", bad, got)
		}
	}
}

func TestEncodeRefusesWhatIsNotJSON(t *testing.T) {
	for name, m := range map[string]protocol.Message{
		"payload": protocol.TaskResultMessage{Result: protocol.TaskResult{Status: protocol.StatusCompleted, Payload: json.RawMessage(`{oops`)}},
		"NaN":     protocol.Backpressure{Signal: protocol.BackpressureSignal{CurrentLoad: math.NaN()}},
		"Inf":     protocol.Backpressure{Signal: protocol.BackpressureSignal{CurrentLoad: math.Inf(1)}},
	} {
		if text, err := protocol.Encode(m); err == nil {
			t.Errorf("%s: encoded as %s", name, text)
		}
	}
}

func TestUUID(t *testing.T) {
	const canonical = "3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f"
	for _, s := range []string{canonical, strings.ToUpper(canonical), "{" + canonical + "}",
		"urn:uuid:" + canonical, strings.ReplaceAll(canonical, "-", "")} {
		if u, err := protocol.ParseUUID(s); err != nil || u.String() != canonical {
			t.Errorf("ParseUUID(%q) = %v, %v", s, u, err)
		}
	}
	for _, s := range []string{"", "task-1", canonical[1:], canonical + "0", strings.Replace(canonical, "3", "g", 1)} {
		if u, err := protocol.ParseUUID(s); err == nil {
			t.Errorf("ParseUUID(%q) accepted as %v", s, u)
		}
	}
}

func TestTimeoutIsCapped(t *testing.T) {
	m := protocol.DefaultMetadata()
	if m.Timeout().Milliseconds() != protocol.DefaultTimeoutMs {
		t.Errorf("default timeout %v", m.Timeout())
	}
	m.TimeoutMs = 1<<53 - 1
	if m.Timeout() != math.MaxInt64 {
		t.Errorf("timeout of 2^53-1 ms is %v", m.Timeout())
	}
}

// Edges beyond the shared vectors, where Go's encoding/json would be more lenient
// than the protocol.
func TestDecodingEdges(t *testing.T) {
	const task = `"id":"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f","taskType":"x"`
	for frame, kind := range map[string]protocol.ErrorKind{
		`{"type":"TaskDispatch","task":{` + task + `,"metadata":null}}`:                              protocol.KindMistypedField,
		`{"type":"TaskDispatch","task":{` + task + `,"metadata":{"traceId":null,"timeoutMs":1.5}}}`:  protocol.KindMistypedField,
		`{"type":"TaskDispatch","task":{` + task + `,"metadata":{"timeoutMs":9223372036854775808}}}`: protocol.KindOutOfRange,
		`{"type":"WorkerRegister","registration":{"workerId":"w","supportedTasks":["a",null]}}`:      protocol.KindMistypedField,
		`{"type":"Shutdown","Graceful":false,"graceful":null}`:                                       protocol.KindMistypedField,
		`{"type":"Kill","TaskId":"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f"}`:                            protocol.KindMissingField,
	} {
		var decodeErr *protocol.DecodeError
		if _, err := protocol.Decode([]byte(frame)); !errors.As(err, &decodeErr) || decodeErr.Kind != kind {
			t.Errorf("%s: got %v, want a %q error", frame, err, kind)
		}
	}
	m, err := protocol.Decode([]byte(`{"type":"WorkerRegister","registration":{"workerId":"w","supportedTasks":null}}`))
	if r, ok := m.(protocol.WorkerRegister); err != nil || !ok || r.Registration.SupportedTasks == nil || len(r.Registration.SupportedTasks) != 0 {
		t.Errorf("supportedTasks null: %#v, %v", m, err)
	}
}

// The optional extension fields are written only when they hold something, so that
// a message without them keeps rust-pipe v0.1's shape byte for byte.
func TestExtensionFieldsAreWrittenOnlyWhenPresent(t *testing.T) {
	const id = "3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f"
	taskID, _ := protocol.ParseUUID(id)
	fraction, message := 0.4, "stage 2"
	running := func(progress *protocol.Progress, extendMs int64) protocol.Message {
		return protocol.TaskResultMessage{Result: protocol.TaskResult{TaskID: taskID, Status: protocol.StatusRunning,
			DurationMs: 1200, WorkerID: "w1", Progress: progress, ExtendMs: extendMs}}
	}
	const result = `{"type":"TaskResult","result":{"taskId":"` + id + `","status":"Running","payload":null,"error":null,"durationMs":1200,"workerId":"w1"`
	const registration = `{"type":"WorkerRegister","registration":{"workerId":"w1","supportedTasks":["fetch","render"],"maxConcurrency":52,"language":"Go","tags":[]`
	dispatch := func(key *string, attempt, epoch *int64) protocol.Message {
		metadata := protocol.TaskMetadata{CreatedAt: time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC), TimeoutMs: 300000,
			Priority: protocol.PriorityNormal, MaxRetries: 3, IdempotencyKey: key, Attempt: attempt, Epoch: epoch}
		return protocol.TaskDispatch{Task: protocol.Task{ID: taskID, TaskType: "charge", Payload: json.RawMessage(`{"order":42}`), Metadata: metadata}}
	}
	const task = `{"type":"TaskDispatch","task":{"id":"` + id + `","taskType":"charge","payload":{"order":42},"metadata":{"createdAt":"2025-03-14T09:26:53Z","timeoutMs":300000,"priority":"Normal","retryCount":0,"maxRetries":3,"traceId":null`
	key, empty, zero, three, seven := "order-42", "", int64(0), int64(3), int64(7)
	register := func(limits map[string]int64) protocol.Message {
		return protocol.WorkerRegister{Registration: protocol.WorkerRegistration{WorkerID: "w1",
			SupportedTasks: []string{"fetch", "render"}, MaxConcurrency: 52, Language: "Go", MaxConcurrencyByType: limits}}
	}
	for _, c := range []struct {
		name    string
		message protocol.Message
		want    string
	}{
		{"dispatch, none", dispatch(nil, nil, nil), task + `}}}`},
		{"dispatch, all", dispatch(&key, &three, &seven), task + `,"idempotencyKey":"order-42","attempt":3,"epoch":7}}}`},
		{"dispatch, empty key", dispatch(&empty, nil, nil), task + `,"idempotencyKey":""}}}`},
		{"dispatch, attempt", dispatch(nil, &three, nil), task + `,"attempt":3}}}`},
		{"dispatch, epoch 0", dispatch(nil, nil, &zero), task + `,"epoch":0}}}`},
		{"running, neither", running(nil, 0), result + `}}`},
		{"progress", running(&protocol.Progress{Fraction: &fraction, Message: &message}, 0),
			result + `,"progress":{"fraction":0.4,"message":"stage 2"}}}`},
		{"progress of nulls", running(&protocol.Progress{}, 0), result + `,"progress":{"fraction":null,"message":null}}}`},
		{"extension", running(nil, 30_000), result + `,"extendMs":30000}}`},
		{"both", running(&protocol.Progress{Message: &message}, 5),
			result + `,"progress":{"fraction":null,"message":"stage 2"},"extendMs":5}}`},
		{"not draining", protocol.Backpressure{Signal: protocol.BackpressureSignal{WorkerID: "w1", CurrentLoad: 0.5, ShouldThrottle: true}},
			`{"type":"Backpressure","signal":{"workerId":"w1","currentLoad":0.5,"shouldThrottle":true}}`},
		{"draining", protocol.Backpressure{Signal: protocol.BackpressureSignal{WorkerID: "w1", CurrentLoad: 0.5, ShouldThrottle: true, Draining: true}},
			`{"type":"Backpressure","signal":{"workerId":"w1","currentLoad":0.5,"shouldThrottle":true,"draining":true}}`},
		{"no per-type limits", register(map[string]int64{}), registration + `}}`},
		{"per-type limits", register(map[string]int64{"render": 2, "fetch": 50, `a"b`: 1}),
			registration + `,"maxConcurrencyByType":{"a\"b":1,"fetch":50,"render":2}}}`},
	} {
		text, err := protocol.Encode(c.message)
		if err != nil || string(text) != c.want {
			t.Errorf("%s:\n got: %s (%v)\nwant: %s", c.name, text, err, c.want)
			continue
		}
		if again := reencodeText(t, text); again != c.want {
			t.Errorf("%s: decoded and encoded again as\n%s", c.name, again)
		}
	}
	if text, err := protocol.Encode(running(&protocol.Progress{Fraction: new(float64)}, 0)); err != nil || !strings.Contains(string(text), `"fraction":0.0`) {
		t.Errorf("fraction 0: %s (%v)", text, err)
	}
	nan := math.NaN()
	if text, err := protocol.Encode(running(&protocol.Progress{Fraction: &nan}, 0)); err == nil {
		t.Errorf("a NaN fraction encoded as %s", text)
	}
}

func reencodeText(t *testing.T, text []byte) string {
	t.Helper()
	m, err := protocol.Decode(text)
	if err != nil {
		t.Fatalf("%s: %v", text, err)
	}
	again, err := protocol.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(again)
}

func TestDecodingExtensionFields(t *testing.T) {
	const result = `{"type":"TaskResult","result":{"taskId":"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f","status":`
	const registration = `{"type":"WorkerRegister","registration":{"workerId":"w","supportedTasks":["a"],"maxConcurrency":4,`
	for frame, kind := range map[string]protocol.ErrorKind{
		result + `"Running","progress":{"fraction":1.5,"message":null}}}`:    protocol.KindOutOfRange,
		result + `"Running","progress":{"fraction":-0.1,"message":null}}}`:   protocol.KindOutOfRange,
		result + `"Running","progress":{"fraction":"half"}}}`:                protocol.KindMistypedField,
		result + `"Running","progress":{"message":7}}}`:                      protocol.KindMistypedField,
		result + `"Running","progress":0.5}}`:                                protocol.KindMistypedField,
		result + `"Running","extendMs":0}}`:                                  protocol.KindOutOfRange,
		result + `"Running","extendMs":1.5}}`:                                protocol.KindMistypedField,
		`{"type":"Backpressure","signal":{"workerId":"w","draining":"yes"}}`: protocol.KindMistypedField,
		registration + `"maxConcurrencyByType":{"a":0}}}`:                    protocol.KindOutOfRange,
		registration + `"maxConcurrencyByType":{"a":5}}}`:                    protocol.KindOutOfRange,
		registration + `"maxConcurrencyByType":{"a":"2"}}}`:                  protocol.KindMistypedField,
		registration + `"maxConcurrencyByType":[2]}}`:                        protocol.KindMistypedField,
	} {
		var decodeErr *protocol.DecodeError
		if _, err := protocol.Decode([]byte(frame)); !errors.As(err, &decodeErr) || decodeErr.Kind != kind {
			t.Errorf("%s: got %v, want a %q error", frame, err, kind)
		}
	}
	const dispatch = `{"type":"TaskDispatch","task":{"id":"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f","taskType":"ping","metadata":{`
	for metadata, want := range map[string]struct {
		kind protocol.ErrorKind
		path string
	}{
		`"attempt":0`:                 {protocol.KindOutOfRange, "$.task.metadata.attempt"},
		`"attempt":-2`:                {protocol.KindOutOfRange, "$.task.metadata.attempt"},
		`"epoch":-1`:                  {protocol.KindOutOfRange, "$.task.metadata.epoch"},
		`"attempt":1.0`:               {protocol.KindMistypedField, "$.task.metadata.attempt"},
		`"epoch":"7"`:                 {protocol.KindMistypedField, "$.task.metadata.epoch"},
		`"idempotencyKey":42`:         {protocol.KindMistypedField, "$.task.metadata.idempotencyKey"},
		`"attempt":1,"epoch":true`:    {protocol.KindMistypedField, "$.task.metadata.epoch"},
		`"epoch":9223372036854775808`: {protocol.KindOutOfRange, "$.task.metadata.epoch"},
	} {
		var decodeErr *protocol.DecodeError
		_, err := protocol.Decode([]byte(dispatch + metadata + `}}}`))
		if !errors.As(err, &decodeErr) || decodeErr.Kind != want.kind || !strings.HasSuffix(decodeErr.Reason, " @ "+want.path) {
			t.Errorf("%s: got %v, want a %q error @ %s", metadata, err, want.kind, want.path)
		}
	}
	// Missing members take their defaults; null is absence; a terminal result's
	// progress is ignored, as it never carries one.
	for frame, want := range map[string]string{
		result + `"Running","progress":{},"extendMs":null}}`:                 `"progress":{"fraction":null,"message":null}}}`,
		result + `"Running","progress":null,"extendMs":9}}`:                  `"workerId":"","extendMs":9}}`,
		result + `"Completed","progress":{"fraction":2},"extendMs":0}}`:      `"workerId":""}}`,
		registration + `"maxConcurrencyByType":null}}`:                       `"tags":[]}}`,
		registration + `"maxConcurrencyByType":{}}}`:                         `"tags":[]}}`,
		`{"type":"Backpressure","signal":{"workerId":"w","draining":false}}`: `"shouldThrottle":false}}`,
		dispatch + `"idempotencyKey":null,"attempt":null,"epoch":null}}}`:    `"traceId":null}}}`,
		dispatch + `"epoch":0,"attempt":1,"idempotencyKey":"k"}}}`:           `"traceId":null,"idempotencyKey":"k","attempt":1,"epoch":0}}}`,
	} {
		if got := reencodeText(t, []byte(frame)); !strings.HasSuffix(got, want) {
			t.Errorf("%s\nre-encoded as %s, want it to end with %s", frame, got, want)
		}
	}
}
