package protocol

// Message is one of the nine protocol messages: [TaskDispatch], [Kill], [Shutdown],
// [WorkerRegistered] and [HeartbeatAck] (dispatcher to worker), [WorkerRegister],
// [Heartbeat], [TaskResultMessage] and [Backpressure] (worker to dispatcher).
type Message interface {
	// Type returns the message's "type" tag as written on the wire.
	Type() string
	message()
}

// TaskDispatch hands a task to the worker.
type TaskDispatch struct{ Task Task }

// Kill asks the worker to stop one task now.
type Kill struct {
	TaskID UUID
	Reason string // for logs; may be empty
}

// Shutdown asks the worker to stop taking work and exit: after finishing the tasks
// in flight when Graceful, after stopping them otherwise.
type Shutdown struct{ Graceful bool }

// WorkerRegistered accepts a registration.
type WorkerRegistered struct{ WorkerID string }

// HeartbeatAck answers a Heartbeat.
type HeartbeatAck struct{}

// WorkerRegister is a WebSocket worker's first message.
type WorkerRegister struct{ Registration WorkerRegistration }

// Heartbeat says the worker is alive, and how busy.
type Heartbeat struct{ Payload HeartbeatPayload }

// TaskResultMessage carries a TaskResult ("type": "TaskResult").
type TaskResultMessage struct{ Result TaskResult }

// Backpressure asks the dispatcher to stop or resume sending tasks.
type Backpressure struct{ Signal BackpressureSignal }

func (TaskDispatch) Type() string      { return "TaskDispatch" }
func (Kill) Type() string              { return "Kill" }
func (Shutdown) Type() string          { return "Shutdown" }
func (WorkerRegistered) Type() string  { return "WorkerRegistered" }
func (HeartbeatAck) Type() string      { return "HeartbeatAck" }
func (WorkerRegister) Type() string    { return "WorkerRegister" }
func (Heartbeat) Type() string         { return "Heartbeat" }
func (TaskResultMessage) Type() string { return "TaskResult" }
func (Backpressure) Type() string      { return "Backpressure" }

func (TaskDispatch) message()      {}
func (Kill) message()              {}
func (Shutdown) message()          {}
func (WorkerRegistered) message()  {}
func (HeartbeatAck) message()      {}
func (WorkerRegister) message()    {}
func (Heartbeat) message()         {}
func (TaskResultMessage) message() {}
func (Backpressure) message()      {}
