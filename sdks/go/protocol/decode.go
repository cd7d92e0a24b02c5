package protocol

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrorKind classifies why [Decode] rejected a frame.
type ErrorKind string

// The kinds of decoding errors.
const (
	KindNotJSON       ErrorKind = "not JSON"
	KindNotObject     ErrorKind = "not an object"
	KindMissingType   ErrorKind = "missing type"
	KindTypeNotString ErrorKind = "type not a string"
	KindUnknownType   ErrorKind = "unknown type"
	KindMissingField  ErrorKind = "missing field"
	KindMistypedField ErrorKind = "mistyped field"
	KindBadEnum       ErrorKind = "bad enum value"
	KindOutOfRange    ErrorKind = "out of range"
	KindBadWorkerID   ErrorKind = "bad worker id"
	KindBadUUID       ErrorKind = "bad UUID"
	KindBadTimestamp  ErrorKind = "bad timestamp"
)

// DecodeError is a frame that is not a valid message: the peer broke the protocol.
type DecodeError struct {
	Kind ErrorKind
	// Reason says what is wrong, ending with the path of the bad value when there
	// is one: "invalid Kill: required field missing @ $.taskId".
	Reason string
}

func (e *DecodeError) Error() string { return e.Reason }

// IsMessage reports whether the frame was a JSON object with a "type", so that
// the error is in a message rather than in text that is no message at all.
func (e *DecodeError) IsMessage() bool {
	return e.Kind != KindNotJSON && e.Kind != KindNotObject && e.Kind != KindMissingType
}

var decoders = map[string]func(object) Message{
	"taskdispatch": func(o object) Message {
		task, _ := o.object("task", true)
		return TaskDispatch{decodeTask(task)}
	},
	"kill": func(o object) Message {
		o.alias("task_id", "taskId")
		return Kill{TaskID: o.uuid("taskId"), Reason: o.optString("reason", "")}
	},
	"shutdown": func(o object) Message {
		return Shutdown{Graceful: o.boolean("graceful", true)}
	},
	"workerregistered": func(o object) Message {
		o.alias("worker_id", "workerId")
		return WorkerRegistered{WorkerID: o.string("workerId")}
	},
	"heartbeatack": func(object) Message { return HeartbeatAck{} },
	"workerregister": func(o object) Message {
		r, _ := o.object("registration", true)
		return WorkerRegister{decodeRegistration(r)}
	},
	"heartbeat": func(o object) Message {
		p, _ := o.object("payload", true)
		return Heartbeat{HeartbeatPayload{
			WorkerID:      p.string("workerId"),
			ActiveTasks:   p.integer("activeTasks", 0, 0),
			Capacity:      p.integer("capacity", 0, 0),
			UptimeSeconds: p.integer("uptimeSeconds", 0, 0),
		}}
	},
	"taskresult": func(o object) Message {
		r, _ := o.object("result", true)
		return TaskResultMessage{decodeResult(r)}
	},
	"backpressure": func(o object) Message {
		s, _ := o.object("signal", true)
		return Backpressure{BackpressureSignal{
			WorkerID:       s.string("workerId"),
			CurrentLoad:    s.number("currentLoad", 0),
			ShouldThrottle: s.boolean("shouldThrottle", false),
			Draining:       s.boolean("draining", false),
		}}
	},
}

// Decode parses one frame into a message. Every error it returns is a *DecodeError.
func Decode(frame []byte) (Message, error) {
	text, err := appendCanonical(nil, frame)
	if err != nil {
		return nil, &DecodeError{KindNotJSON, "not JSON: " + err.Error()}
	}
	if text[0] != '{' {
		return nil, &DecodeError{KindNotObject, "expected a JSON object, got " + kindOf(text)}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(text, &fields); err != nil {
		return nil, &DecodeError{KindNotJSON, "not JSON: " + err.Error()}
	}
	tag, ok := fields["type"]
	if !ok || string(tag) == "null" {
		return nil, &DecodeError{KindMissingType, "missing message type"}
	}
	var name string
	if tag[0] != '"' || json.Unmarshal(tag, &name) != nil {
		return nil, &DecodeError{KindTypeNotString, "message type must be a string"}
	}
	key, _ := asciiLower(name) // "" when not ASCII, which names no message
	decode := decoders[key]
	if decode == nil {
		return nil, &DecodeError{KindUnknownType, "unknown message type " + quoteShort(name)}
	}
	d := &decoder{}
	message := decode(object{d, "$", fields})
	if d.err != nil {
		d.err.Reason = "invalid " + message.Type() + ": " + d.err.Reason
		return nil, d.err
	}
	return message, nil
}

func decodeTask(o object) Task {
	task := Task{ID: o.uuid("id"), TaskType: o.string("taskType"), Payload: o.anyJSON("payload")}
	task.Metadata = DefaultMetadata()
	if m, ok := o.object("metadata", false); ok {
		task.Metadata = TaskMetadata{
			CreatedAt:  m.timestamp("createdAt", task.Metadata.CreatedAt),
			TimeoutMs:  m.integer("timeoutMs", DefaultTimeoutMs, 0),
			Priority:   m.priority("priority"),
			RetryCount: m.integer("retryCount", 0, 0),
			MaxRetries: m.integer("maxRetries", DefaultMaxRetries, 0),
			TraceID:    m.nullableString("traceId"),
			// Extensions: absent or null is none.
			IdempotencyKey: m.nullableString("idempotencyKey"),
			Attempt:        m.nullableInteger("attempt", 1),
			Epoch:          m.nullableInteger("epoch", 0),
		}
	}
	return task
}

func decodeResult(o object) TaskResult {
	result := TaskResult{
		TaskID:     o.uuid("taskId"),
		Status:     o.status("status"),
		Payload:    o.anyJSON("payload"),
		DurationMs: o.integer("durationMs", 0, 0),
		WorkerID:   o.optString("workerId", ""),
	}
	if raw, ok := o.fields["error"]; ok && string(raw) != "null" {
		e, _ := o.object("error", true)
		result.Error = &TaskError{
			Code:      e.string("code"),
			Message:   e.string("message"),
			Retryable: e.boolean("retryable", false),
		}
	}
	if result.Status != StatusRunning {
		return result // a terminal result never carries progress or extendMs: ignored
	}
	if raw, ok := o.fields["progress"]; ok && string(raw) != "null" {
		p, _ := o.object("progress", true)
		result.Progress = &Progress{Fraction: p.nullableNumber("fraction"), Message: p.nullableString("message")}
		if f := result.Progress.Fraction; f != nil && (*f < 0 || *f > 1) {
			o.d.fail(KindOutOfRange, p.path+".fraction", "fraction must be in [0, 1], got %v", *f)
		}
	}
	if raw, ok := o.fields["extendMs"]; ok && string(raw) != "null" {
		result.ExtendMs = o.integer("extendMs", 0, 1)
	}
	return result
}

func decodeRegistration(o object) WorkerRegistration {
	// rust-pipe wrote the language as {"Other": "wasm"}: read a single member's value.
	if raw, ok := o.fields["language"]; ok && raw[0] == '{' {
		var members map[string]json.RawMessage
		if json.Unmarshal(raw, &members) == nil && len(members) == 1 {
			for _, value := range members {
				o.fields["language"] = value
			}
		}
	}
	r := WorkerRegistration{
		WorkerID:       o.string("workerId"),
		SupportedTasks: o.strings("supportedTasks", true),
		MaxConcurrency: o.integer("maxConcurrency", 1, 1),
		Language:       o.optString("language", "Unknown"),
		Tags:           o.strings("tags", false),
	}
	if raw, ok := o.fields["maxConcurrencyByType"]; ok && string(raw) != "null" {
		limits, _ := o.object("maxConcurrencyByType", true)
		r.MaxConcurrencyByType = map[string]int64{}
		for _, taskType := range slices.Sorted(maps.Keys(limits.fields)) {
			if kind := kindOf(limits.fields[taskType]); kind != "integer" {
				// As the reference codec says it: at the object, naming the type.
				o.d.fail(KindMistypedField, limits.path, "expected an integer for '%s', got %s", taskType, kind)
				continue
			}
			limit := limits.integer(taskType, 1, 1)
			if limit > r.MaxConcurrency {
				o.d.fail(KindOutOfRange, limits.path+"."+taskType, "%d is more than maxConcurrency (%d)", limit, r.MaxConcurrency)
			}
			r.MaxConcurrencyByType[taskType] = limit
		}
	}
	if err := ValidateWorkerID(r.WorkerID); err != nil {
		o.d.fail(KindBadWorkerID, o.path+".workerId", "%s", err) // unless an error came first
	}
	return r
}

// decoder holds the first error found in a message.
type decoder struct{ err *DecodeError }

func (d *decoder) fail(kind ErrorKind, path, format string, args ...any) {
	if d.err == nil {
		d.err = &DecodeError{kind, fmt.Sprintf(format, args...) + " @ " + path}
	}
}

// object reads the members of one JSON object. Its getters return the member's
// value, or its default when it is missing; they record the first problem in the
// decoder and then return zero values.
type object struct {
	d      *decoder
	path   string
	fields map[string]json.RawMessage // nil when the object itself was bad
}

// member returns the raw value of name, recording a missing required member.
func (o object) member(name string, required bool) (json.RawMessage, bool) {
	raw, ok := o.fields[name]
	if !ok && required && o.fields != nil {
		o.d.fail(KindMissingField, o.path+"."+name, "required field missing")
	}
	return raw, ok
}

// alias copies the member old to new when new is missing.
func (o object) alias(old, new string) {
	if _, ok := o.fields[new]; !ok {
		if raw, ok := o.fields[old]; ok {
			o.fields[new] = raw
		}
	}
}

func (o object) mistyped(name, expected string, raw json.RawMessage) {
	o.d.fail(KindMistypedField, o.path+"."+name, "expected %s, got %s", expected, kindOf(raw))
}

// object returns the member name as an object.
func (o object) object(name string, required bool) (object, bool) {
	nested := object{d: o.d, path: o.path + "." + name}
	raw, ok := o.member(name, required)
	if !ok {
		return nested, false
	}
	if raw[0] != '{' {
		o.mistyped(name, "an object", raw)
		return nested, false
	}
	_ = json.Unmarshal(raw, &nested.fields) // valid: checked by Decode
	return nested, true
}

// string returns a required string member.
func (o object) string(name string) string {
	raw, ok := o.member(name, true)
	if !ok {
		return ""
	}
	return o.stringValue(name, raw)
}

func (o object) optString(name, def string) string {
	raw, ok := o.member(name, false)
	if !ok {
		return def
	}
	return o.stringValue(name, raw)
}

func (o object) nullableString(name string) *string {
	raw, ok := o.member(name, false)
	if !ok || string(raw) == "null" {
		return nil
	}
	s := o.stringValue(name, raw)
	return &s
}

func (o object) stringValue(name string, raw json.RawMessage) string {
	var s string
	if raw[0] != '"' {
		o.mistyped(name, "a string", raw)
		return ""
	}
	_ = json.Unmarshal(raw, &s)
	return s
}

// strings returns a list of strings; null (like a missing optional member) is empty.
func (o object) strings(name string, required bool) []string {
	raw, ok := o.member(name, required)
	list := []string{}
	if !ok || string(raw) == "null" {
		return list
	}
	var items []json.RawMessage
	if raw[0] == '[' {
		_ = json.Unmarshal(raw, &items)
	}
	for _, item := range items {
		if item[0] != '"' {
			break
		}
		var s string
		_ = json.Unmarshal(item, &s)
		list = append(list, s)
	}
	if raw[0] != '[' || len(list) < len(items) {
		o.mistyped(name, "a list of strings", raw)
	}
	return list
}

func (o object) boolean(name string, def bool) bool {
	raw, ok := o.member(name, false)
	if !ok {
		return def
	}
	if string(raw) != "true" && string(raw) != "false" {
		o.mistyped(name, "a boolean", raw)
		return def
	}
	return string(raw) == "true"
}

// integer returns an integer member of at least min: a number without a fraction
// or an exponent.
func (o object) integer(name string, def, min int64) int64 {
	raw, ok := o.member(name, false)
	if !ok {
		return def
	}
	if kindOf(raw) != "integer" {
		o.mistyped(name, "an integer", raw)
		return def
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		o.d.fail(KindOutOfRange, o.path+"."+name, "%s is too large", raw)
		return def
	}
	if n < min {
		o.d.fail(KindOutOfRange, o.path+"."+name, "%s must be >= %d, got %d", name, min, n)
		return def
	}
	return n
}

// nullableInteger returns an integer member of at least min, or nil when it is
// missing or null.
func (o object) nullableInteger(name string, min int64) *int64 {
	raw, ok := o.member(name, false)
	if !ok || string(raw) == "null" {
		return nil
	}
	n := o.integer(name, min, min)
	return &n
}

func (o object) nullableNumber(name string) *float64 {
	raw, ok := o.member(name, false)
	if !ok || string(raw) == "null" {
		return nil
	}
	f := o.number(name, 0)
	return &f
}

func (o object) number(name string, def float64) float64 {
	raw, ok := o.member(name, false)
	if !ok {
		return def
	}
	if !isNumberByte(raw[0]) {
		o.mistyped(name, "a number", raw)
		return def
	}
	f, _ := strconv.ParseFloat(string(raw), 64) // in range: checked by Decode
	return f
}

func (o object) uuid(name string) UUID {
	raw, ok := o.member(name, true)
	if !ok {
		return UUID{}
	}
	var s string
	if raw[0] != '"' {
		o.d.fail(KindBadUUID, o.path+"."+name, "expected a UUID string, got %s", kindOf(raw))
		return UUID{}
	}
	_ = json.Unmarshal(raw, &s)
	u, err := ParseUUID(s)
	if err != nil {
		o.d.fail(KindBadUUID, o.path+"."+name, "%s", err)
	}
	return u
}

func (o object) timestamp(name string, def time.Time) time.Time {
	raw, ok := o.member(name, false)
	if !ok {
		return def
	}
	var s string
	if raw[0] != '"' {
		o.d.fail(KindBadTimestamp, o.path+"."+name, "expected an RFC 3339 timestamp, got %s", kindOf(raw))
		return def
	}
	_ = json.Unmarshal(raw, &s)
	t, err := parseTimestamp(s)
	if err != nil {
		o.d.fail(KindBadTimestamp, o.path+"."+name, "%s", err)
		return def
	}
	return t
}

// asciiLower is s in lower case, and true, when s is ASCII only; "" and false
// otherwise. The type tag and enum values are matched ignoring ASCII case only:
// strings.ToLower and strings.EqualFold would also take "İ" (U+0130) for "i" and the
// Kelvin sign (U+212A) for "k", which no other SDK does.
func asciiLower(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// enumKeys are the spellings of the PascalCase enum value name that Decode accepts, in
// lower case: the name and, for a name of several words, its snake_case ("timedout",
// "timed_out"). Matched against the ASCII lower case of the value received, so that
// these are accepted in any ASCII case, and nothing else (docs/protocol.md, "Enum").
func enumKeys(name string) []string {
	var snake strings.Builder
	var previous rune
	for _, r := range name {
		if 'A' <= r && r <= 'Z' && ('a' <= previous && previous <= 'z' || '0' <= previous && previous <= '9') {
			snake.WriteByte('_')
		}
		snake.WriteRune(r)
		previous = r
	}
	return []string{strings.ToLower(name), strings.ToLower(snake.String())}
}

var (
	priorities = map[string]Priority{}
	statuses   = map[string]TaskStatus{}
)

func init() {
	for _, p := range []Priority{PriorityLow, PriorityNormal, PriorityHigh, PriorityCritical} {
		for _, key := range enumKeys(p.String()) {
			priorities[key] = p
		}
	}
	for _, s := range []TaskStatus{StatusPending, StatusDispatched, StatusRunning,
		StatusCompleted, StatusFailed, StatusTimedOut, StatusCancelled} {
		for _, key := range enumKeys(string(s)) {
			statuses[key] = s
		}
	}
}

// enumLookup finds the value received, s, in a table built with enumKeys.
func enumLookup[E any](table map[string]E, s string) (E, bool) {
	key, ascii := asciiLower(s)
	value, ok := table[key]
	return value, ascii && ok
}

func (o object) priority(name string) Priority {
	if s, ok := o.enum(name, "priority", false); ok {
		if p, ok := enumLookup(priorities, s); ok {
			return p
		}
		o.d.fail(KindBadEnum, o.path+"."+name, "unknown priority %s", quoteShort(s))
	}
	return PriorityNormal
}

func (o object) status(name string) TaskStatus {
	if s, ok := o.enum(name, "task status", true); ok {
		if status, ok := enumLookup(statuses, s); ok {
			return status
		}
		o.d.fail(KindBadEnum, o.path+"."+name, "unknown task status %s", quoteShort(s))
	}
	return ""
}

// enum returns the string of an enum member, if it is present and a string.
func (o object) enum(name, what string, required bool) (string, bool) {
	raw, ok := o.member(name, required)
	if !ok {
		return "", false
	}
	if raw[0] != '"' {
		o.mistyped(name, "a "+what+" string", raw)
		return "", false
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return s, true
}

// anyJSON returns a member of any JSON value, "null" when it is missing.
func (o object) anyJSON(name string) json.RawMessage {
	if raw, ok := o.member(name, false); ok {
		return raw
	}
	return json.RawMessage("null")
}

// kindOf names the kind of a valid, compact JSON value for error messages.
func kindOf(raw []byte) string {
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	for _, c := range raw {
		if c == '.' || c == 'e' || c == 'E' {
			return "float"
		}
	}
	return "integer"
}
