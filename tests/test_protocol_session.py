"""WorkerSession: the dispatcher's sans-IO view of one worker connection.

Example tests state each rule; a Hypothesis state machine then drives a session with
random traffic against a simple model and checks the bookkeeping never drifts. The
worker's illegal messages raise RemoteProtocolError, ours LocalProtocolError.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trio_pipe.protocol import (
    Backpressure,
    BackpressureSignal,
    DispatcherMessage,
    Heartbeat,
    HeartbeatAck,
    HeartbeatPayload,
    Kill,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
    SessionState,
    Shutdown,
    Task,
    TaskDispatch,
    TaskResult,
    TaskResultMessage,
    TaskStatus,
    WorkerMessage,
    WorkerRegister,
    WorkerRegistered,
    WorkerRegistration,
    WorkerSession,
)

WORKER_ID = "w1"
TERMINAL = [s for s in TaskStatus if s.is_terminal]


def registration(
    max_concurrency: int = 2,
    worker_id: str = WORKER_ID,
    supported: tuple[str, ...] = ("echo",),
) -> WorkerRegistration:
    return WorkerRegistration(worker_id, supported, max_concurrency=max_concurrency)


def spawned_session(max_concurrency: int = 2) -> WorkerSession:
    """A stdio/Docker/SSH worker: registered by the dispatcher itself."""
    return WorkerSession(registration(max_concurrency))


def registered_session(max_concurrency: int = 2) -> WorkerSession:
    """A WebSocket worker that has sent its WorkerRegister."""
    session = WorkerSession()
    session.receive(WorkerRegister(registration(max_concurrency)))
    return session


def dispatch(session: WorkerSession, task_id: uuid.UUID | None = None) -> uuid.UUID:
    task = Task(id=task_id or uuid.uuid4(), task_type="echo")
    session.send(TaskDispatch(task))
    return task.id


def result(
    task_id: uuid.UUID,
    status: TaskStatus = TaskStatus.COMPLETED,
    worker_id: str = WORKER_ID,
) -> TaskResultMessage:
    return TaskResultMessage(TaskResult(task_id, status, worker_id=worker_id))


def heartbeat(active_tasks: int) -> Heartbeat:
    return Heartbeat(HeartbeatPayload(WORKER_ID, active_tasks=active_tasks, capacity=2))


def backpressure(should_throttle: bool) -> Backpressure:
    return Backpressure(BackpressureSignal(WORKER_ID, 1.0, should_throttle=should_throttle))


# ---------------------------------------------------------------------------
# Registration


def test_a_websocket_session_awaits_registration() -> None:
    session = WorkerSession()
    assert session.state is SessionState.AWAITING_REGISTRATION
    assert session.capacity == 0
    assert not session.can_accept()


@pytest.mark.parametrize(
    "message",
    [heartbeat(0), result(uuid.uuid4()), backpressure(True)],
    ids=["Heartbeat", "TaskResult", "Backpressure"],
)
def test_a_websocket_worker_must_register_before_anything_else(message: Message) -> None:
    with pytest.raises(RemoteProtocolError, match="expected WorkerRegister"):
        WorkerSession().receive(message)


def test_nothing_can_be_dispatched_to_a_worker_that_has_not_registered() -> None:
    with pytest.raises(LocalProtocolError):
        dispatch(WorkerSession())


def test_a_worker_id_is_unknown_until_registration() -> None:
    with pytest.raises(LocalProtocolError):
        _ = WorkerSession().worker_id


def test_registration_activates_a_websocket_session() -> None:
    session = WorkerSession()
    message = WorkerRegister(registration(max_concurrency=3))
    assert session.receive(message) == message
    assert session.state is SessionState.ACTIVE
    assert (session.worker_id, session.capacity) == (WORKER_ID, 3)
    assert session.can_accept()


def test_registering_twice_is_a_protocol_error() -> None:
    session = registered_session()
    with pytest.raises(RemoteProtocolError, match="registered twice"):
        session.receive(WorkerRegister(registration()))


def test_a_spawned_session_starts_active() -> None:
    session = spawned_session(max_concurrency=3)
    assert session.state is SessionState.ACTIVE
    assert (session.worker_id, session.capacity) == (WORKER_ID, 3)
    assert session.can_accept()


def test_a_spawned_worker_may_describe_itself_but_keeps_the_dispatcher_given_id() -> None:
    session = spawned_session(max_concurrency=1)
    own = registration(max_concurrency=4, worker_id="self-named", supported=("a", "b"))
    session.receive(WorkerRegister(own))
    assert session.registration == registration(4, WORKER_ID, ("a", "b"))
    assert session.state is SessionState.ACTIVE


def test_a_spawned_worker_registering_twice_is_a_protocol_error() -> None:
    session = spawned_session()
    session.receive(WorkerRegister(registration()))
    with pytest.raises(RemoteProtocolError, match="registered twice"):
        session.receive(WorkerRegister(registration()))


def test_a_worker_that_shrinks_its_capacity_below_its_load_gets_no_new_task() -> None:
    session = spawned_session(max_concurrency=3)
    held = [dispatch(session) for _ in range(3)]
    session.receive(WorkerRegister(registration(max_concurrency=1)))
    assert (session.load, session.free_slots) == (3, 0)
    assert not session.can_accept()
    with pytest.raises(LocalProtocolError, match="at capacity"):
        dispatch(session)
    for task_id in held:
        session.receive(result(task_id))
    assert session.can_accept()


@pytest.mark.parametrize(
    "session_factory", [WorkerSession, spawned_session], ids=["websocket", "spawned"]
)
def test_worker_registered_cannot_be_sent_before_the_worker_registers(
    session_factory: Any,
) -> None:
    with pytest.raises(LocalProtocolError):
        session_factory().send(WorkerRegistered(WORKER_ID))


def test_worker_registered_answers_one_worker_register_once() -> None:
    session = registered_session()
    session.send(WorkerRegistered(WORKER_ID))
    with pytest.raises(LocalProtocolError):
        session.send(WorkerRegistered(WORKER_ID))


# ---------------------------------------------------------------------------
# Dispatch


def test_a_dispatched_task_holds_one_slot_and_is_in_flight() -> None:
    session = spawned_session(max_concurrency=2)
    task_id = dispatch(session)
    assert (session.load, session.free_slots) == (1, 1)
    assert session.in_flight() == [task_id]
    assert not session.is_running(task_id)


def test_dispatching_beyond_capacity_is_a_local_protocol_error() -> None:
    session = spawned_session(max_concurrency=1)
    dispatch(session)
    assert not session.can_accept()
    with pytest.raises(LocalProtocolError, match="at capacity"):
        dispatch(session)
    assert session.load == 1


def test_dispatching_a_task_already_on_the_worker_is_a_local_protocol_error() -> None:
    session = spawned_session(max_concurrency=2)
    task_id = dispatch(session)
    with pytest.raises(LocalProtocolError, match="already on this worker"):
        dispatch(session, task_id)
    assert session.load == 1


def test_dispatching_after_shutdown_is_a_local_protocol_error() -> None:
    session = spawned_session()
    session.send(Shutdown(graceful=True))
    with pytest.raises(LocalProtocolError, match="closing"):
        dispatch(session)


def test_a_finished_task_may_be_dispatched_again() -> None:
    session = spawned_session()
    task_id = dispatch(session)
    session.receive(result(task_id, TaskStatus.FAILED))
    dispatch(session, task_id)  # a retry that keeps its id
    assert session.in_flight() == [task_id]


# ---------------------------------------------------------------------------
# Results


@pytest.mark.parametrize("status", TERMINAL, ids=lambda s: s.value)
def test_a_terminal_result_frees_the_slot_and_is_passed_on(status: TaskStatus) -> None:
    session = spawned_session()
    task_id = dispatch(session)
    message = result(task_id, status)
    assert session.receive(message) == message
    assert (session.load, session.in_flight()) == (0, [])


def test_a_result_for_a_never_dispatched_task_is_a_protocol_error() -> None:
    session = spawned_session()
    dispatch(session)
    with pytest.raises(RemoteProtocolError, match="never dispatched"):
        session.receive(result(uuid.uuid4()))


def test_a_second_result_for_a_finished_task_is_ignored_and_counted() -> None:
    session = spawned_session()
    task_id = dispatch(session)
    session.receive(result(task_id))
    assert session.receive(result(task_id, TaskStatus.FAILED)) is None
    assert session.duplicate_results == 1
    assert session.load == 0


def test_a_running_result_marks_the_task_running_and_keeps_its_slot() -> None:
    session = spawned_session()
    task_id = dispatch(session)
    message = result(task_id, TaskStatus.RUNNING)
    assert session.receive(message) == message
    assert session.is_running(task_id)
    assert (session.load, session.in_flight()) == (1, [task_id])


def test_a_pending_result_is_a_protocol_error() -> None:
    session = spawned_session()
    task_id = dispatch(session)
    with pytest.raises(RemoteProtocolError, match="Pending"):
        session.receive(result(task_id, TaskStatus.PENDING))
    assert session.in_flight() == [task_id]


@pytest.mark.parametrize(
    "message",
    [
        Heartbeat(HeartbeatPayload("someone-else", active_tasks=0, capacity=2)),
        Backpressure(BackpressureSignal("someone-else", 1.0, should_throttle=True)),
        result(uuid.uuid4(), worker_id="someone-else"),
    ],
    ids=["Heartbeat", "Backpressure", "TaskResult"],
)
def test_a_worker_that_registered_itself_may_not_speak_for_another(
    message: Message,
) -> None:
    session = registered_session()
    if isinstance(message, TaskResultMessage):  # a task it does hold
        dispatch(session, message.result.task_id)
    with pytest.raises(RemoteProtocolError, match="names worker 'someone-else'"):
        session.receive(message)
    assert not session.throttled


@pytest.mark.parametrize("reported", ["", "someone-else"])
def test_a_result_is_attributed_to_the_sessions_worker(reported: str) -> None:
    session = spawned_session()
    task_id = dispatch(session)
    accepted = session.receive(result(task_id, worker_id=reported))
    assert isinstance(accepted, TaskResultMessage)
    assert accepted.result == TaskResult(task_id, TaskStatus.COMPLETED, worker_id=WORKER_ID)


def test_results_still_flow_after_shutdown() -> None:
    session = spawned_session()
    task_id = dispatch(session)
    session.send(Shutdown(graceful=True))
    assert session.receive(result(task_id)) is not None
    assert session.load == 0


def test_a_session_remembers_only_a_bounded_number_of_finished_tasks() -> None:
    session = WorkerSession(registration(max_concurrency=3), remembered_results=2)
    first, second, third = (dispatch(session) for _ in range(3))
    for task_id in (first, second, third):
        session.receive(result(task_id))
    assert session.receive(result(third)) is None  # remembered: a duplicate
    with pytest.raises(RemoteProtocolError, match="never dispatched"):
        session.receive(result(first))  # forgotten: unknown


def test_the_finished_tasks_remembered_are_the_most_recently_finished() -> None:
    session = WorkerSession(registration(), remembered_results=2)
    retried, other, last = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for task_id in (retried, other, retried, last):
        dispatch(session, task_id)
        session.receive(result(task_id))
    # Finished most recently: last, then retried (its second run); other is forgotten.
    assert session.receive(result(retried)) is None
    with pytest.raises(RemoteProtocolError, match="never dispatched"):
        session.receive(result(other))


# ---------------------------------------------------------------------------
# Kill and abandon


def test_kill_for_a_task_not_on_the_worker_is_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError, match="not on this worker"):
        spawned_session().send(Kill(uuid.uuid4()))


def test_kill_for_a_finished_task_is_a_local_protocol_error() -> None:
    session = spawned_session()
    task_id = dispatch(session)
    session.receive(result(task_id))
    with pytest.raises(LocalProtocolError, match="not on this worker"):
        session.send(Kill(task_id))


def test_kill_keeps_the_slot_until_the_worker_reports() -> None:
    session = spawned_session()
    task_id = dispatch(session)
    session.send(Kill(task_id, "timed out"))
    assert session.load == 1
    session.receive(result(task_id, TaskStatus.CANCELLED))
    assert session.load == 0


def test_kill_is_allowed_while_closing() -> None:
    session = spawned_session()
    task_id = dispatch(session)
    session.send(Shutdown(graceful=True))
    session.send(Kill(task_id))


def test_an_abandoned_task_is_no_longer_in_flight_but_keeps_its_slot() -> None:
    session = spawned_session(max_concurrency=1)
    task_id = dispatch(session)
    session.abandon(task_id)
    assert session.in_flight() == []
    assert session.load == 1
    assert not session.can_accept()


def test_a_result_for_an_abandoned_task_frees_its_slot() -> None:
    session = spawned_session()
    task_id = dispatch(session)
    session.abandon(task_id)
    assert session.receive(result(task_id, TaskStatus.CANCELLED)) is not None
    assert session.load == 0


def test_a_heartbeat_reporting_fewer_active_tasks_frees_abandoned_slots_oldest_first() -> (
    None
):
    session = spawned_session(max_concurrency=4)
    oldest, older, kept = dispatch(session), dispatch(session), dispatch(session)
    for task_id in (oldest, older, kept):
        session.abandon(task_id)
    in_flight = dispatch(session)
    session.receive(heartbeat(active_tasks=2))
    assert session.load == 2
    assert session.receive(result(oldest)) is None  # freed: a late result is a repeat
    assert session.receive(result(older)) is None
    assert session.receive(result(kept)) is not None  # still held until now
    assert session.in_flight() == [in_flight]


def test_a_heartbeat_never_frees_a_task_still_in_flight() -> None:
    session = spawned_session(max_concurrency=2)
    first, second = dispatch(session), dispatch(session)
    session.receive(heartbeat(active_tasks=0))
    assert session.load == 2
    assert session.in_flight() == [first, second]


def test_a_heartbeat_reporting_as_many_tasks_as_held_frees_nothing() -> None:
    session = spawned_session(max_concurrency=2)
    task_id = dispatch(session)
    session.abandon(task_id)
    session.receive(heartbeat(active_tasks=1))
    assert session.load == 1


def test_abandoning_a_task_not_on_the_worker_does_nothing() -> None:
    session = spawned_session()
    session.abandon(uuid.uuid4())
    assert session.load == 0


# ---------------------------------------------------------------------------
# Backpressure


def test_backpressure_throttles_the_worker() -> None:
    session = spawned_session()
    session.receive(backpressure(True))
    assert session.throttled
    assert not session.can_accept()


def test_backpressure_without_should_throttle_lifts_the_throttle() -> None:
    session = spawned_session()
    session.receive(backpressure(True))
    session.receive(backpressure(False))
    assert session.can_accept()


def test_a_heartbeat_with_free_capacity_lifts_the_throttle() -> None:
    session = spawned_session(max_concurrency=2)
    session.receive(backpressure(True))
    session.receive(heartbeat(active_tasks=1))
    assert not session.throttled
    assert session.can_accept()


def test_a_heartbeat_at_full_capacity_keeps_the_throttle() -> None:
    session = spawned_session(max_concurrency=2)
    session.receive(backpressure(True))
    session.receive(heartbeat(active_tasks=2))
    assert session.throttled


# ---------------------------------------------------------------------------
# Draining (a worker that stops on its own)


def draining(current_load: float = 0.5) -> Backpressure:
    return Backpressure(BackpressureSignal(WORKER_ID, current_load, True, draining=True))


def test_a_draining_worker_gets_no_new_task_and_its_tasks_finish() -> None:
    session = spawned_session()
    running = dispatch(session)
    session.receive(draining())
    assert session.draining
    assert session.state is SessionState.DRAINING
    assert not session.can_accept()
    with pytest.raises(LocalProtocolError, match="cannot send TaskDispatch while draining"):
        dispatch(session)
    session.send(Kill(running))
    assert session.receive(result(running)) is not None
    assert session.load == 0


@pytest.mark.parametrize(
    "later",
    [backpressure(False), heartbeat(active_tasks=0)],
    ids=["Backpressure without throttle", "idle Heartbeat"],
)
def test_nothing_but_the_connection_ending_lifts_a_drain(later: Message) -> None:
    session = spawned_session()
    session.receive(draining())
    session.receive(later)
    assert session.draining
    assert not session.can_accept()


def test_a_draining_worker_may_still_be_shut_down() -> None:
    session = spawned_session()
    session.receive(draining())
    session.send(Shutdown(graceful=False))
    assert session.state is SessionState.CLOSING


# ---------------------------------------------------------------------------
# Limits per task type


def limited_session() -> WorkerSession:
    """Capacity 3, at most 1 ``render`` at once, ``fetch`` unlimited."""
    return WorkerSession(
        WorkerRegistration(
            WORKER_ID,
            ("render", "fetch"),
            max_concurrency=3,
            max_concurrency_by_type={"render": 1},
        )
    )


def dispatch_type(session: WorkerSession, task_type: str) -> uuid.UUID:
    task = Task(id=uuid.uuid4(), task_type=task_type)
    session.send(TaskDispatch(task))
    return task.id


def test_a_task_type_at_its_limit_is_refused_while_others_are_taken() -> None:
    session = limited_session()
    first = dispatch_type(session, "render")
    assert not session.can_accept("render")
    assert session.can_accept("fetch") and session.can_accept()
    assert not session.below_limit("render") and session.below_limit("fetch")
    with pytest.raises(LocalProtocolError, match="at its limit for task type 'render'"):
        dispatch_type(session, "render")
    dispatch_type(session, "fetch")
    dispatch_type(session, "fetch")
    assert not session.can_accept("fetch")  # the worker's capacity, over all types
    session.receive(result(first))
    assert session.load_of("render") == 0
    assert session.below_limit("render") and session.below_limit("fetch")


def test_a_type_slot_is_freed_by_a_heartbeat_as_any_slot_is() -> None:
    session = limited_session()
    task_id = dispatch_type(session, "render")
    session.abandon(task_id)
    session.receive(heartbeat(active_tasks=0))
    assert session.can_accept("render")


def test_closing_frees_every_type_slot() -> None:
    session = limited_session()
    dispatch_type(session, "render")
    session.close()
    assert session.load_of("render") == 0


def test_a_worker_without_limits_accepts_every_type_it_has_room_for() -> None:
    session = spawned_session()
    assert session.below_limit("echo") and session.below_limit("other")
    assert session.can_accept("echo")


# ---------------------------------------------------------------------------
# Shutdown and close


def test_shutdown_moves_the_session_to_closing() -> None:
    session = spawned_session()
    session.send(Shutdown(graceful=True))
    assert session.state is SessionState.CLOSING
    assert not session.can_accept()


def test_a_forced_shutdown_may_follow_a_graceful_one() -> None:
    session = spawned_session()
    session.send(Shutdown(graceful=True))
    session.send(Shutdown(graceful=False))
    assert session.state is SessionState.CLOSING


def test_heartbeats_are_acknowledged_while_active_or_closing() -> None:
    session = spawned_session()
    session.send(HeartbeatAck())
    session.send(Shutdown(graceful=True))
    session.send(HeartbeatAck())


def test_a_heartbeat_ack_cannot_be_sent_before_registration() -> None:
    with pytest.raises(LocalProtocolError):
        WorkerSession().send(HeartbeatAck())


def test_close_returns_the_tasks_in_flight_but_not_the_abandoned_ones() -> None:
    session = spawned_session(max_concurrency=3)
    running, waiting, abandoned = dispatch(session), dispatch(session), dispatch(session)
    session.receive(result(running, TaskStatus.RUNNING))
    session.abandon(abandoned)
    assert sorted(session.close()) == sorted([running, waiting])
    assert session.state is SessionState.CLOSED
    assert (session.load, session.in_flight()) == (0, [])


WORKER_SIDE: list[WorkerMessage] = [
    WorkerRegister(registration()),
    heartbeat(0),
    result(uuid.uuid4()),
    backpressure(False),
]
DISPATCHER_SIDE: list[DispatcherMessage] = [
    TaskDispatch(Task(id=uuid.uuid4(), task_type="echo")),
    Kill(uuid.uuid4()),
    Shutdown(graceful=True),
    WorkerRegistered(WORKER_ID),
    HeartbeatAck(),
]


def _type_of(message: Message) -> str:
    return message.TYPE


@pytest.mark.parametrize("message", WORKER_SIDE, ids=_type_of)
def test_a_closed_session_rejects_every_worker_message(message: WorkerMessage) -> None:
    session = registered_session()
    session.close()
    with pytest.raises(RemoteProtocolError, match="closed"):
        session.receive(message)


@pytest.mark.parametrize("message", DISPATCHER_SIDE, ids=_type_of)
def test_a_closed_session_refuses_every_dispatcher_message(
    message: DispatcherMessage,
) -> None:
    session = registered_session()
    session.close()
    with pytest.raises(LocalProtocolError):
        session.send(message)


# ---------------------------------------------------------------------------
# Direction


@pytest.mark.parametrize("message", DISPATCHER_SIDE, ids=_type_of)
def test_a_dispatcher_message_from_the_worker_is_a_protocol_error(message: Message) -> None:
    with pytest.raises(RemoteProtocolError, match="sent by a dispatcher") as caught:
        spawned_session().receive(message)
    assert not isinstance(caught.value, LocalProtocolError)


@pytest.mark.parametrize("message", WORKER_SIDE, ids=_type_of)
def test_a_worker_message_cannot_be_sent_by_the_dispatcher(message: Any) -> None:
    with pytest.raises(LocalProtocolError, match="not sent by a dispatcher"):
        spawned_session().send(message)


# ---------------------------------------------------------------------------
# The state machine


DISPATCHED, RUNNING, ABANDONED = "dispatched", "running", "abandoned"
SPAWNED_ID = "spawned-0"
REMEMBERED = 2  # small, so that forgetting old results is exercised too


class SessionModel:
    """What a session should know, kept in the plainest possible form."""

    def __init__(self, registered_as: str | None = None, capacity: int = 0) -> None:
        self.state = (
            SessionState.ACTIVE if registered_as else SessionState.AWAITING_REGISTRATION
        )
        self.worker_id = registered_as
        self.named_by_peer = registered_as is None  # then it may name no other worker
        self.capacity = capacity
        self.slots: dict[uuid.UUID, str] = {}  # in dispatch order
        self.finished: list[uuid.UUID] = []  # the REMEMBERED most recently finished
        self.ever_finished: list[uuid.UUID] = []
        self.throttled = False
        self.peer_registered = False
        self.acked = False
        self.duplicates = 0
        self.load_when_capacity_changed = 0

    @property
    def live(self) -> bool:
        """Registered and not closed: the worker's messages may flow."""
        return self.state in (SessionState.ACTIVE, SessionState.CLOSING)

    def register(self, worker_id: str, capacity: int) -> None:
        self.peer_registered = True
        if self.state is SessionState.AWAITING_REGISTRATION:
            self.state, self.worker_id = SessionState.ACTIVE, worker_id
        self.capacity = capacity
        self.load_when_capacity_changed = len(self.slots)

    def finish(self, task_id: uuid.UUID) -> None:
        del self.slots[task_id]
        if task_id in self.finished:
            self.finished.remove(task_id)
        self.finished = [*self.finished, task_id][-REMEMBERED:]
        if task_id not in self.ever_finished:
            self.ever_finished.append(task_id)

    def in_flight(self) -> set[uuid.UUID]:
        return {t for t, slot in self.slots.items() if slot != ABANDONED}


reported_worker_ids = st.sampled_from(["", WORKER_ID, SPAWNED_ID, "someone-else"])
some_task = st.uuids()


def after_some_work(machine: WorkerSessionMachine) -> bool:
    """Gate for the rules that end a session's useful life (Shutdown, close), so that
    most steps of a run are spent on a live session, past the forgetting horizon."""
    return len(machine.model.ever_finished) > 2 * REMEMBERED


class WorkerSessionMachine(RuleBasedStateMachine):
    """Random traffic on one session, checked step by step against SessionModel."""

    tasks = Bundle("tasks")  # every id the dispatcher tried to dispatch

    def __init__(self) -> None:
        super().__init__()
        self.session = WorkerSession(remembered_results=REMEMBERED)
        self.model = SessionModel()

    # Call, expecting exactly the error the model predicts, or none.

    def receive(self, message: Message, *, legal: bool) -> Message | None:
        if legal:
            return self.session.receive(message)
        with pytest.raises(RemoteProtocolError) as caught:
            self.session.receive(message)
        assert not isinstance(caught.value, LocalProtocolError)
        return None

    def send(self, message: DispatcherMessage, *, legal: bool) -> None:
        if legal:
            self.session.send(message)
        else:
            with pytest.raises(LocalProtocolError):
                self.session.send(message)

    def held_task(self, data: st.DataObject) -> uuid.UUID:
        return data.draw(st.sampled_from(list(self.model.slots)), label="held task")

    @initialize(
        kind=st.sampled_from(["spawned", "websocket", "websocket-registered"]),
        capacity=st.integers(min_value=1, max_value=4),
    )
    def start(self, kind: str, capacity: int) -> None:
        if kind == "spawned":
            registered = registration(capacity, SPAWNED_ID)
            self.session = WorkerSession(registered, remembered_results=REMEMBERED)
            self.model = SessionModel(SPAWNED_ID, capacity)
        elif kind == "websocket-registered":
            self.session.receive(WorkerRegister(registration(capacity, WORKER_ID)))
            self.model.register(WORKER_ID, capacity)

    # The worker's messages

    @rule(capacity=st.integers(min_value=1, max_value=4))
    def worker_registers(self, capacity: int) -> None:
        model = self.model
        legal = model.state is not SessionState.CLOSED and not model.peer_registered
        message = WorkerRegister(registration(capacity, WORKER_ID))
        accepted = self.receive(message, legal=legal)
        if legal:
            assert accepted == message
            model.register(WORKER_ID, capacity)

    @rule(
        task_id=tasks | some_task,
        status=st.sampled_from(TaskStatus),
        worker=reported_worker_ids,
    )
    def worker_reports(self, task_id: uuid.UUID, status: TaskStatus, worker: str) -> None:
        self._report(task_id, status, worker)

    @precondition(lambda self: self.model.slots)
    @rule(data=st.data(), status=st.sampled_from(TaskStatus), worker=reported_worker_ids)
    def worker_reports_on_a_held_task(
        self, data: st.DataObject, status: TaskStatus, worker: str
    ) -> None:
        self._report(self.held_task(data), status, worker)

    @precondition(lambda self: self.model.ever_finished)
    @rule(data=st.data(), status=st.sampled_from(TaskStatus))
    def worker_repeats_a_result(self, data: st.DataObject, status: TaskStatus) -> None:
        # Remembered (a harmless repeat), forgotten (unknown), or dispatched again.
        task_id = data.draw(
            st.sampled_from(self.model.ever_finished), label="finished task"
        )
        self._report(task_id, status, WORKER_ID)

    def _report(self, task_id: uuid.UUID, status: TaskStatus, worker: str) -> None:
        model = self.model
        message = result(task_id, status, worker)
        held = task_id in model.slots
        duplicate = not held and task_id in model.finished
        own = not model.named_by_peer or worker in ("", model.worker_id)
        legal = (
            model.live
            and own
            and (duplicate or (held and status is not TaskStatus.PENDING))
        )
        accepted = self.receive(message, legal=legal)
        if not legal:
            return
        if duplicate:
            assert accepted is None
            model.duplicates += 1
        elif not status.is_terminal:
            assert accepted == message
            if model.slots[task_id] == DISPATCHED:
                model.slots[task_id] = RUNNING
        else:
            assert isinstance(accepted, TaskResultMessage)
            assert accepted.result == TaskResult(task_id, status, worker_id=model.worker_id)
            model.finish(task_id)

    @rule(active_tasks=st.integers(min_value=0, max_value=5))
    def worker_heartbeats(self, active_tasks: int) -> None:
        model = self.model
        message = heartbeat(active_tasks)
        accepted = self.receive(message, legal=model.live)
        if not model.live:
            return
        assert accepted == message
        excess = len(model.slots) - active_tasks
        abandoned = [t for t, slot in model.slots.items() if slot == ABANDONED]
        for task_id in abandoned[: max(excess, 0)]:  # oldest first
            model.finish(task_id)
        if active_tasks < model.capacity:
            model.throttled = False

    @rule(should_throttle=st.booleans())
    def worker_signals_backpressure(self, should_throttle: bool) -> None:
        message = backpressure(should_throttle)
        accepted = self.receive(message, legal=self.model.live)
        if self.model.live:
            assert accepted == message
            self.model.throttled = should_throttle

    @rule(should_throttle=st.booleans())
    def worker_signals_backpressure_for_another_worker(self, should_throttle: bool) -> None:
        signal = BackpressureSignal("someone-else", 1.0, should_throttle=should_throttle)
        legal = self.model.live and not self.model.named_by_peer
        accepted = self.receive(Backpressure(signal), legal=legal)
        if legal:
            assert accepted == Backpressure(signal)
            self.model.throttled = should_throttle

    @rule(message=st.sampled_from(DISPATCHER_SIDE))
    def worker_sends_a_dispatcher_message(self, message: Message) -> None:
        self.receive(message, legal=False)

    # The dispatcher's messages and decisions

    @rule(target=tasks, task_id=tasks | some_task)
    def dispatcher_dispatches(self, task_id: uuid.UUID) -> uuid.UUID:
        model = self.model
        legal = (
            model.state is SessionState.ACTIVE
            and task_id not in model.slots
            and len(model.slots) < model.capacity
        )
        self.send(TaskDispatch(Task(id=task_id, task_type="echo")), legal=legal)
        if legal:
            model.slots[task_id] = DISPATCHED
        return task_id

    @rule(task_id=tasks | some_task)
    def dispatcher_kills(self, task_id: uuid.UUID) -> None:
        self.send(Kill(task_id), legal=self.model.live and task_id in self.model.slots)

    @precondition(lambda self: self.model.slots)
    @rule(data=st.data())
    def dispatcher_kills_a_held_task(self, data: st.DataObject) -> None:
        self.send(Kill(self.held_task(data)), legal=self.model.live)

    @rule(task_id=tasks | some_task)
    def dispatcher_abandons(self, task_id: uuid.UUID) -> None:
        self._abandon(task_id)

    @precondition(lambda self: self.model.slots)
    @rule(data=st.data())
    def dispatcher_abandons_a_held_task(self, data: st.DataObject) -> None:
        self._abandon(self.held_task(data))

    def _abandon(self, task_id: uuid.UUID) -> None:
        self.session.abandon(task_id)  # never an error
        if task_id in self.model.slots:
            self.model.slots[task_id] = ABANDONED

    @rule()
    def dispatcher_acknowledges_a_heartbeat(self) -> None:
        self.send(HeartbeatAck(), legal=self.model.live)

    @rule()
    def dispatcher_confirms_registration(self) -> None:
        model = self.model
        legal = model.live and model.peer_registered and not model.acked
        self.send(WorkerRegistered(WORKER_ID), legal=legal)
        if legal:
            model.acked = True

    @precondition(after_some_work)
    @rule(graceful=st.booleans())
    def dispatcher_shuts_down(self, graceful: bool) -> None:
        legal = self.model.live
        self.send(Shutdown(graceful=graceful), legal=legal)
        if legal:
            self.model.state = SessionState.CLOSING

    @rule(message=st.sampled_from(WORKER_SIDE))
    def dispatcher_sends_a_worker_message(self, message: Any) -> None:
        self.send(message, legal=False)

    # The connection ends at the end of every run, and sometimes earlier.

    @precondition(after_some_work)
    @rule()
    def connection_closes(self) -> None:
        self._close()

    def teardown(self) -> None:
        self._close()

    def _close(self) -> None:
        lost = self.session.close()
        assert len(lost) == len(set(lost))
        assert set(lost) == self.model.in_flight()
        self.model.slots.clear()
        self.model.state = SessionState.CLOSED

    # Invariants

    @invariant()
    def state_matches(self) -> None:
        assert self.session.state is self.model.state
        assert self.session.throttled == self.model.throttled
        assert self.session.duplicate_results == self.model.duplicates

    @invariant()
    def load_is_the_number_of_held_slots(self) -> None:
        assert self.session.load == len(self.model.slots)
        assert self.session.capacity == self.model.capacity
        assert self.session.free_slots == max(
            self.model.capacity - len(self.model.slots), 0
        )

    @invariant()
    def load_never_exceeds_capacity(self) -> None:
        # ...unless the worker itself shrank its capacity while busy: then the surplus is
        # only what it already held, and it drains.
        load, model = self.session.load, self.model
        assert load <= model.capacity or load <= model.load_when_capacity_changed

    @invariant()
    def in_flight_matches(self) -> None:
        in_flight = self.session.in_flight()
        assert len(in_flight) == len(set(in_flight))
        assert set(in_flight) == self.model.in_flight()
        for task_id, slot in self.model.slots.items():
            assert self.session.is_running(task_id) == (slot == RUNNING)

    @invariant()
    def can_accept_agrees_with_state_throttle_and_load(self) -> None:
        model = self.model
        expected = (
            model.state is SessionState.ACTIVE
            and not model.throttled
            and len(model.slots) < model.capacity
        )
        assert self.session.can_accept() == expected

    @invariant()
    def worker_id_is_known_once_registered(self) -> None:
        if self.model.worker_id is None:
            with pytest.raises(LocalProtocolError):
                _ = self.session.worker_id
        else:
            assert self.session.worker_id == self.model.worker_id


TestWorkerSessionStateMachine = WorkerSessionMachine.TestCase
TestWorkerSessionStateMachine.settings = settings(
    max_examples=300, stateful_step_count=80, deadline=None
)
