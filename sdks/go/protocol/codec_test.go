package protocol_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

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
