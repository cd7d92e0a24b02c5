"""The session rules, one table for both sides of a connection.

Example tests state the rules from the worker's side (the dispatcher's side is spelled
out in test_protocol_session.py); a Hypothesis state machine then drives a dispatcher's
session and a worker's session with the same traffic and checks that what one side may
send the other accepts, and what one side may not send the other refuses.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trio_pipe.protocol import (
    DISPATCHER_MESSAGES,
    WORKER_MESSAGES,
    Backpressure,
    BackpressureSignal,
    Heartbeat,
    HeartbeatAck,
    HeartbeatPayload,
    Kill,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
    Role,
    Session,
    SessionState,
    Shutdown,
    Task,
    TaskDispatch,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
)

TASK_ID = uuid.UUID(int=1)
EXAMPLES: dict[type[Message], Message] = {
    WorkerRegister: WorkerRegister(WorkerRegistration("w1", ("echo",))),
    Heartbeat: Heartbeat(HeartbeatPayload("w1")),
    TaskResultMessage: TaskResultMessage(TaskResult(TASK_ID, TaskStatus.COMPLETED)),
    Backpressure: Backpressure(BackpressureSignal("w1")),
    TaskDispatch: TaskDispatch(Task(TASK_ID, "echo")),
    Kill: Kill(TASK_ID),
    Shutdown: Shutdown(),
    WorkerRegistered: WorkerRegistered("w1"),
    HeartbeatAck: HeartbeatAck(),
}
ALL_TYPES = list(EXAMPLES)
DRAINING = Backpressure(BackpressureSignal("w1", should_throttle=True, draining=True))
ALL_MESSAGES = [*EXAMPLES.values(), DRAINING]


def websocket_worker() -> Session:
    return Session(Role.WORKER)


def registered_worker() -> Session:
    """A WebSocket worker that has sent its WorkerRegister."""
    session = Session(Role.WORKER)
    session.send(EXAMPLES[WorkerRegister])
    return session


def spawned_worker() -> Session:
    return Session(Role.WORKER, registered=True)


def _type_of(message: Message) -> str:
    return message.TYPE


# ---------------------------------------------------------------------------
# The worker's side


def test_the_roles_are_each_others_peer() -> None:
    assert (Role.WORKER.peer, Role.DISPATCHER.peer) == (Role.DISPATCHER, Role.WORKER)


@pytest.mark.parametrize(
    "kind", [Heartbeat, TaskResultMessage, Backpressure], ids=lambda k: k.TYPE
)
def test_a_websocket_worker_sends_worker_register_before_anything_else(
    kind: type[Message],
) -> None:
    session = websocket_worker()
    with pytest.raises(LocalProtocolError, match="while awaiting registration"):
        session.send(EXAMPLES[kind])
    assert session.state is SessionState.AWAITING_REGISTRATION


@pytest.mark.parametrize(
    "message", [EXAMPLES[k] for k in DISPATCHER_MESSAGES], ids=_type_of
)
def test_the_dispatcher_may_send_nothing_before_the_worker_registers(
    message: Message,
) -> None:
    session = websocket_worker()
    with pytest.raises(RemoteProtocolError):
        session.receive(message)
    assert session.state is SessionState.AWAITING_REGISTRATION


def test_sending_worker_register_activates_the_workers_session() -> None:
    session = websocket_worker()
    session.send(EXAMPLES[WorkerRegister])
    assert session.state is SessionState.ACTIVE
    assert session.worker_registered
    assert not session.registration_answered


def test_worker_registered_answers_the_worker_register_once() -> None:
    session = registered_worker()
    session.receive(EXAMPLES[WorkerRegistered])
    assert session.registration_answered
    with pytest.raises(RemoteProtocolError, match="answers one WorkerRegister"):
        session.receive(EXAMPLES[WorkerRegistered])


def test_worker_registered_accepts_the_registration() -> None:
    session = registered_worker()
    assert not session.registration_accepted
    session.receive(EXAMPLES[WorkerRegistered])
    assert session.registration_accepted


def test_a_task_before_any_answer_accepts_the_registration_too() -> None:
    # rust-pipe 0.1's dispatcher never sends WorkerRegistered: it dispatches at once.
    session = registered_worker()
    session.receive(EXAMPLES[TaskDispatch])
    assert session.registration_accepted and not session.registration_answered
    session.receive(EXAMPLES[WorkerRegistered])  # a late answer is still legal, once
    assert session.registration_answered


def test_the_dispatchers_side_sees_the_same_acceptance() -> None:
    session = Session(Role.DISPATCHER)
    session.receive(EXAMPLES[WorkerRegister])
    session.send(EXAMPLES[TaskDispatch])
    assert session.registration_accepted


def test_a_spawned_worker_is_accepted_from_the_start() -> None:
    assert spawned_worker().registration_accepted


def test_worker_registered_that_answers_nothing_is_a_remote_error() -> None:
    with pytest.raises(RemoteProtocolError, match="answers one WorkerRegister"):
        spawned_worker().receive(EXAMPLES[WorkerRegistered])


def test_tasks_may_come_once_the_worker_register_is_sent() -> None:
    # The dispatcher is active as soon as it has read WorkerRegister: its answer and
    # its first tasks may come in either order.
    session = registered_worker()
    session.receive(EXAMPLES[TaskDispatch])
    session.receive(EXAMPLES[WorkerRegistered])
    assert session.state is SessionState.ACTIVE


def test_a_spawned_worker_starts_active_and_may_describe_itself_once() -> None:
    session = spawned_worker()
    assert session.state is SessionState.ACTIVE
    session.receive(EXAMPLES[TaskDispatch])
    session.send(EXAMPLES[WorkerRegister])
    with pytest.raises(LocalProtocolError, match="registered twice"):
        session.send(EXAMPLES[WorkerRegister])
    session.receive(EXAMPLES[WorkerRegistered])


def test_shutdown_closes_the_session_to_new_tasks_only() -> None:
    session = spawned_worker()
    session.receive(Shutdown(graceful=True))
    assert session.state is SessionState.CLOSING
    with pytest.raises(RemoteProtocolError, match="TaskDispatch received while closing"):
        session.receive(EXAMPLES[TaskDispatch])
    for kind in (Kill, HeartbeatAck, Shutdown):
        session.receive(EXAMPLES[kind])
    for kind in (TaskResultMessage, Heartbeat, Backpressure):
        session.send(EXAMPLES[kind])
    assert session.state is SessionState.CLOSING


def test_a_draining_worker_takes_no_new_task_but_reports_and_may_be_shut_down() -> None:
    session = spawned_worker()
    session.send(DRAINING)
    assert session.state is SessionState.DRAINING
    with pytest.raises(RemoteProtocolError, match="TaskDispatch received while draining"):
        session.receive(EXAMPLES[TaskDispatch])
    for kind in (Kill, HeartbeatAck):
        session.receive(EXAMPLES[kind])
    for message in (*(EXAMPLES[k] for k in (TaskResultMessage, Heartbeat)), DRAINING):
        session.send(message)
    session.send(EXAMPLES[Backpressure])  # a later Backpressure does not lift it
    assert session.state is SessionState.DRAINING
    session.receive(Shutdown(graceful=False))
    assert session.state is SessionState.CLOSING


def test_a_draining_backpressure_after_shutdown_changes_nothing() -> None:
    session = spawned_worker()
    session.receive(Shutdown())
    session.send(DRAINING)
    assert session.state is SessionState.CLOSING


@pytest.mark.parametrize("message", [EXAMPLES[k] for k in WORKER_MESSAGES], ids=_type_of)
def test_a_worker_message_from_the_dispatcher_is_a_remote_error(message: Message) -> None:
    with pytest.raises(RemoteProtocolError, match="sent by a worker, not by a dispatcher"):
        spawned_worker().receive(message)


@pytest.mark.parametrize(
    "message", [EXAMPLES[k] for k in DISPATCHER_MESSAGES], ids=_type_of
)
def test_the_worker_cannot_send_a_dispatcher_message(message: Message) -> None:
    with pytest.raises(LocalProtocolError, match="not sent by a worker"):
        spawned_worker().send(message)


@pytest.mark.parametrize("kind", ALL_TYPES, ids=lambda k: k.TYPE)
def test_a_closed_session_lets_nothing_cross(kind: type[Message]) -> None:
    session = registered_worker()
    session.close()
    with pytest.raises(LocalProtocolError):
        session.send(EXAMPLES[kind])
    with pytest.raises(RemoteProtocolError):
        session.receive(EXAMPLES[kind])
    with pytest.raises(LocalProtocolError):
        session.check_send(kind)
    assert session.state is SessionState.CLOSED


def test_check_send_refuses_as_send_would_but_records_nothing() -> None:
    session = websocket_worker()
    with pytest.raises(LocalProtocolError, match="cannot send TaskResult"):
        session.check_send(TaskResultMessage)
    session.check_send(WorkerRegister)
    assert session.state is SessionState.AWAITING_REGISTRATION
    assert not session.worker_registered
    session.send(EXAMPLES[WorkerRegister])
    session.check_send(TaskResultMessage)


# ---------------------------------------------------------------------------
# Both sides, one table

AWAITING, ACTIVE = SessionState.AWAITING_REGISTRATION, SessionState.ACTIVE
DRAINING_STATE, CLOSING = SessionState.DRAINING, SessionState.CLOSING
CLOSED = SessionState.CLOSED
WORKER_LIVE = {WorkerRegister, Heartbeat, TaskResultMessage, Backpressure}

# The rules as docs/protocol.md states them ("Session rules"), in the plainest form.
MAY_SEND: dict[Role, dict[SessionState, set[type[Message]]]] = {
    Role.WORKER: {
        AWAITING: {WorkerRegister},
        ACTIVE: WORKER_LIVE,
        DRAINING_STATE: WORKER_LIVE,
        CLOSING: WORKER_LIVE,
        CLOSED: set(),
    },
    Role.DISPATCHER: {
        AWAITING: set(),
        ACTIVE: {WorkerRegistered, TaskDispatch, Kill, HeartbeatAck, Shutdown},
        DRAINING_STATE: {WorkerRegistered, Kill, HeartbeatAck, Shutdown},
        CLOSING: {WorkerRegistered, Kill, HeartbeatAck, Shutdown},
        CLOSED: set(),
    },
}


class ConnectionModel:
    def __init__(self, *, spawned: bool) -> None:
        self.state = ACTIVE if spawned else AWAITING
        self.registered = False  # a WorkerRegister crossed
        self.answered = False  # a WorkerRegistered crossed
        self.accepted = spawned  # answered, or a TaskDispatch crossed after WorkerRegister

    def legal(self, sender: Role, kind: type[Message]) -> bool:
        if kind not in MAY_SEND[sender][self.state]:
            return False
        if kind is WorkerRegister:
            return not self.registered
        if kind is WorkerRegistered:
            return self.registered and not self.answered
        return True

    def crossed(self, message: Message) -> None:
        kind = type(message)
        if kind is WorkerRegister:
            self.registered = True
            if self.state is AWAITING:
                self.state = ACTIVE
        elif kind is WorkerRegistered:
            self.answered = self.accepted = True
        elif kind is TaskDispatch and self.registered:
            self.accepted = True
        elif kind is Shutdown:
            self.state = CLOSING
        elif message == DRAINING and self.state is ACTIVE:
            self.state = DRAINING_STATE


class ConnectionMachine(RuleBasedStateMachine):
    """A dispatcher's session and a worker's session fed the same messages, each as
    its side sees them, checked against ConnectionModel."""

    def __init__(self) -> None:
        super().__init__()
        self.model = ConnectionModel(spawned=False)
        self.sessions = {role: Session(role) for role in Role}
        self.crossed = 0

    @initialize(spawned=st.booleans())
    def start(self, spawned: bool) -> None:
        self.model = ConnectionModel(spawned=spawned)
        self.sessions = {role: Session(role, registered=spawned) for role in Role}

    @rule(sender=st.sampled_from(Role), message=st.sampled_from(ALL_MESSAGES))
    def a_message_is_sent(self, sender: Role, message: Message) -> None:
        kind = type(message)
        ours, theirs = self.sessions[sender], self.sessions[sender.peer]
        if self.model.legal(sender, kind):
            ours.send(message)
            theirs.receive(message)
            self.model.crossed(message)
            self.crossed += 1
            return
        with pytest.raises(LocalProtocolError):
            ours.send(message)
        # A peer with that bug sends it anyway: the other side refuses it.
        with pytest.raises(RemoteProtocolError):
            theirs.receive(message)

    @rule(side=st.sampled_from(Role), kind=st.sampled_from(ALL_TYPES))
    def a_side_checks_whether_it_may_send(self, side: Role, kind: type[Message]) -> None:
        if kind in MAY_SEND[side][self.model.state]:
            self.sessions[side].check_send(kind)
        else:
            with pytest.raises(LocalProtocolError):
                self.sessions[side].check_send(kind)

    @precondition(lambda self: self.crossed >= 5)  # most steps on a live connection
    @rule()
    def the_connection_closes(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.model.state = CLOSED

    @invariant()
    def both_sides_agree_with_the_model(self) -> None:
        for session in self.sessions.values():
            assert session.state is self.model.state
            assert session.worker_registered == self.model.registered
            assert session.registration_answered == self.model.answered
            assert session.registration_accepted == self.model.accepted


TestConnectionStateMachine = ConnectionMachine.TestCase
TestConnectionStateMachine.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None
)
