/** WebSocket mode against a stand-in dispatcher: registration, heartbeats, shutdown, drain, reconnection. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { runWorker, startWorker, WorkerConnectionError } from "trio-pipe-worker";
import type { Handlers, RunWorkerOptions, TaskAbortedError, WorkerMessage } from "trio-pipe-worker";
import { dispatch, FakeDispatcher, PROMPTLY_MS, RecordingLogger } from "./helpers.js";

/** Fast settings for tests: quick heartbeats and reconnections. */
function options(dispatcher: FakeDispatcher, extra: Partial<RunWorkerOptions> = {}): RunWorkerOptions {
  return {
    url: dispatcher.url,
    handlers: { echo: (payload) => payload },
    workerId: "ts-test-1",
    heartbeatIntervalMs: 50,
    reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
    logger: new RecordingLogger(),
    ...extra,
  };
}

/** A handler that runs until its signal aborts, recording why. */
function untilAborted(reasons: string[]): Handlers {
  return {
    block: (_payload, { signal }) =>
      new Promise((_resolve, reject) =>
        signal.addEventListener("abort", () => {
          reasons.push((signal.reason as TaskAbortedError).kind);
          reject(signal.reason);
        }),
      ),
  };
}

describe("a WebSocket worker", () => {
  test("registers, heartbeats after WorkerRegistered, serves, and closes with 1000 after Shutdown", async () => {
    const dispatcher = await FakeDispatcher.start();
    const worker = runWorker(options(dispatcher, { maxConcurrency: 3, tags: ["gpu", "eu"] }));
    const peer = await dispatcher.accept();
    const first = await peer.next(() => true);
    assert.deepEqual(first, {
      type: "WorkerRegister",
      registration: {
        workerId: "ts-test-1",
        supportedTasks: ["echo"],
        maxConcurrency: 3,
        language: "TypeScript",
        tags: ["gpu", "eu"],
      },
    });
    peer.send({ type: "WorkerRegistered", workerId: "ts-test-1" });
    const heartbeat = await peer.next((m) => m.type === "Heartbeat");
    const payload = { workerId: "ts-test-1", activeTasks: 0, capacity: 3, uptimeSeconds: 0 };
    assert.deepEqual(heartbeat, { type: "Heartbeat", payload });
    const echo = dispatch("echo", { a: [1, "é"] });
    peer.send(echo.frame);
    assert.deepEqual((await peer.result(echo.id)).payload, { a: [1, "é"] });
    peer.send({ type: "Shutdown", graceful: true });
    assert.equal(await peer.closed, 1000);
    await worker;
    await dispatcher.stop();
  });

  test("registers its per-type limits", async () => {
    const dispatcher = await FakeDispatcher.start();
    const handlers: Handlers = { render: () => "r", fetch: () => "f" };
    const limits = { maxConcurrency: 52, maxConcurrencyByType: { render: 2 } };
    const worker = runWorker(options(dispatcher, { handlers, ...limits }));
    const peer = await dispatcher.accept();
    assert.deepEqual(await peer.register(), {
      workerId: "ts-test-1",
      supportedTasks: ["render", "fetch"],
      maxConcurrency: 52,
      language: "TypeScript",
      tags: [],
      maxConcurrencyByType: { render: 2 },
    });
    peer.send({ type: "Shutdown" });
    await worker;
    await dispatcher.stop();
  });

  test("finishes the tasks in flight on a graceful Shutdown before closing", async () => {
    const dispatcher = await FakeDispatcher.start();
    let release = (): void => {};
    const handlers: Handlers = { slow: () => new Promise((resolve) => (release = () => resolve("done"))) };
    const worker = runWorker(options(dispatcher, { handlers, maxConcurrency: 1 }));
    const peer = await dispatcher.accept();
    await peer.register();
    const task = dispatch("slow");
    peer.send(task.frame);
    await peer.next((m) => m.type === "Backpressure"); // the one slot is taken: the handler runs
    peer.send({ type: "Shutdown" });
    release();
    assert.equal((await peer.result(task.id)).payload, "done");
    assert.equal(await peer.closed, 1000);
    await worker;
    await dispatcher.stop();
  });

  test("reconnects with the same worker id when the connection is closed; handlers in flight are aborted", async () => {
    const dispatcher = await FakeDispatcher.start();
    const reasons: string[] = [];
    const worker = runWorker(options(dispatcher, { handlers: { ...untilAborted(reasons), echo: (p) => p } }));
    const first = await dispatcher.accept();
    await first.register();
    first.send(dispatch("block").frame);
    await first.next((m) => m.type === "Heartbeat" && m.payload.activeTasks === 1);
    first.socket.close(1012, "service restart");
    const second = await dispatcher.accept();
    assert.equal((await second.register()).workerId, "ts-test-1");
    assert.deepEqual(reasons, ["disconnect"]);
    const echo = dispatch("echo", "again");
    second.send(echo.frame);
    assert.equal((await second.result(echo.id)).payload, "again");
    assert.deepEqual(first.untaken(), []); // nothing reported for the lost task
    second.send({ type: "Shutdown" });
    await worker;
    await dispatcher.stop();
  });

  test("keeps trying while the dispatcher is away, then registers again", async () => {
    const dispatcher = await FakeDispatcher.start();
    const logger = new RecordingLogger();
    const worker = runWorker(options(dispatcher, { logger }));
    await (await dispatcher.accept()).register();
    await dispatcher.stop();
    await logger.logged("reconnecting in"); // it is trying, and failing
    await dispatcher.restart();
    const peer = await dispatcher.accept();
    await peer.register();
    peer.send({ type: "Shutdown" });
    await worker;
    await dispatcher.stop();
  });

  test("without reconnect, a lost connection rejects with WorkerConnectionError", async () => {
    const dispatcher = await FakeDispatcher.start();
    const worker = runWorker(options(dispatcher, { reconnect: false }));
    const peer = await dispatcher.accept();
    await peer.register();
    peer.socket.close(1011, "internal error");
    await assert.rejects(worker, (error: Error) => {
      return error instanceof WorkerConnectionError && /code 1011 \(internal error\)/.test(error.message);
    });
    await dispatcher.stop();
  });

  test("gives up after maxRetries failed attempts in a row", async () => {
    const dispatcher = await FakeDispatcher.start();
    const url = dispatcher.url;
    await dispatcher.stop(); // nothing listens: every attempt is refused
    const reconnect = { initialDelayMs: 1, maxDelayMs: 5, maxRetries: 3 };
    const worker = runWorker({ ...options(dispatcher), url, reconnect });
    await assert.rejects(worker, WorkerConnectionError);
  });

  test("a dispatcher that answered, then falls silent, counts as a lost connection", async () => {
    const dispatcher = await FakeDispatcher.start({ ackHeartbeats: false });
    const worker = runWorker(options(dispatcher, { silenceTimeoutMs: 600 }));
    const silent = await dispatcher.accept();
    await silent.register(); // then never a word, not even HeartbeatAck
    await silent.next((m) => m.type === "Heartbeat");
    assert.equal(await silent.closed, 1006);
    const fine = await dispatcher.accept();
    await fine.register();
    fine.send({ type: "Shutdown" });
    await worker;
    await dispatcher.stop();
  });

  test("a task before WorkerRegistered accepts the registration (rust-pipe 0.1 never answers)", async () => {
    const dispatcher = await FakeDispatcher.start({ ackHeartbeats: false });
    const logger = new RecordingLogger();
    const worker = runWorker(options(dispatcher, { logger }));
    const peer = await dispatcher.accept();
    await peer.next((m) => m.type === "WorkerRegister");
    const echo = dispatch("echo", "served");
    peer.send(echo.frame);
    assert.equal((await peer.result(echo.id)).payload, "served");
    assert.deepEqual(logger.lines.filter((line) => line.startsWith("warn:")), []);
    await logger.logged("debug: a task came before WorkerRegistered");
    peer.send({ type: "Shutdown" });
    await worker;
    await dispatcher.stop();
  });

  test("an unanswered WorkerRegister is taken as accepted, and a dispatcher that never answers is not watched for silence", async () => {
    // An idle rust-pipe 0.1 dispatcher sends nothing at all, not even HeartbeatAck.
    const dispatcher = await FakeDispatcher.start({ ackHeartbeats: false });
    const silenceTimeoutMs = 300;
    const worker = runWorker(options(dispatcher, { connectTimeoutMs: 200, silenceTimeoutMs, heartbeatIntervalMs: 60_000 }));
    const mute = await dispatcher.accept();
    await mute.next((m) => m.type === "WorkerRegister"); // never answered
    // The first heartbeat goes at once after the timeout: the interval is far longer.
    assert.equal((await mute.next(() => true)).type, "Heartbeat");
    await sleep(3 * silenceTimeoutMs); // long past the silence timeout, not watched
    const echo = dispatch("echo", "still here");
    mute.send(echo.frame);
    assert.equal((await mute.result(echo.id)).payload, "still here");
    assert.equal(dispatcher.connections, 1);
    mute.send({ type: "Shutdown" });
    await worker;
    await dispatcher.stop();
  });

  test("ignores malformed and binary frames, and messages before WorkerRegistered", async () => {
    const dispatcher = await FakeDispatcher.start();
    const logger = new RecordingLogger();
    const worker = runWorker(options(dispatcher, { logger }));
    const peer = await dispatcher.accept();
    await peer.next((m) => m.type === "WorkerRegister");
    peer.send('{"type":"HeartbeatAck"}');
    peer.send("not JSON");
    peer.send({ type: "WorkerRegistered", workerId: "ts-test-1" });
    peer.socket.send(Buffer.from("binary"), { binary: true });
    peer.send('{"type":"TaskDispatch","task":{"taskType":"echo"}}');
    const echo = dispatch("echo", 7);
    peer.send(echo.frame);
    assert.equal((await peer.result(echo.id)).payload, 7);
    const warnings = logger.lines.filter((line) => line.startsWith("warn:"));
    assert.deepEqual(warnings.length, 4, warnings.join("\n"));
    peer.send({ type: "Shutdown" });
    await worker;
    assert.equal(dispatcher.connections, 1);
    await dispatcher.stop();
  });

  test("its own signal aborts the handlers, closes with 1001 and resolves", async () => {
    const dispatcher = await FakeDispatcher.start();
    const stop = new AbortController();
    const reasons: string[] = [];
    const handlers = untilAborted(reasons);
    const worker = runWorker(options(dispatcher, { handlers, signal: stop.signal, maxConcurrency: 1 }));
    const peer = await dispatcher.accept();
    await peer.register();
    peer.send(dispatch("block").frame);
    await peer.next((m) => m.type === "Backpressure");
    stop.abort();
    assert.equal(await peer.closed, 1001);
    await worker;
    assert.deepEqual(reasons, ["stop"]);
    assert.deepEqual(peer.untaken(), []);
    await dispatcher.stop();
  });
});

describe("draining a WebSocket worker", () => {
  const isDraining = (m: WorkerMessage): boolean => m.type === "Backpressure" && m.signal.draining === true;

  test("drain(): Backpressure draining, the task in flight finishes, close 1000, no reconnection", async () => {
    const dispatcher = await FakeDispatcher.start();
    let release = (): void => {};
    const handlers: Handlers = { slow: () => new Promise((resolve) => (release = () => resolve("done"))) };
    const worker = startWorker(options(dispatcher, { handlers, maxConcurrency: 4 }));
    const peer = await dispatcher.accept();
    await peer.register();
    const task = dispatch("slow");
    peer.send(task.frame);
    await peer.next((m) => m.type === "Heartbeat" && m.payload.activeTasks === 1);
    const drained = worker.drain();
    const signal = { workerId: "ts-test-1", currentLoad: 0.25, shouldThrottle: true, draining: true };
    assert.deepEqual(await peer.next(), { type: "Backpressure", signal });
    release();
    assert.equal((await peer.result(task.id)).payload, "done");
    assert.equal(await peer.closed, 1000);
    await drained;
    assert.equal(dispatcher.connections, 1);
    await dispatcher.stop();
  });

  test("a connection lost during the drain is not reopened", async () => {
    const dispatcher = await FakeDispatcher.start();
    const reasons: string[] = [];
    const worker = startWorker(options(dispatcher, { handlers: untilAborted(reasons) }));
    const peer = await dispatcher.accept();
    await peer.register();
    peer.send(dispatch("block").frame);
    await peer.next((m) => m.type === "Heartbeat" && m.payload.activeTasks === 1);
    void worker.drain();
    await peer.next(isDraining);
    peer.socket.close(1012, "service restart");
    await worker.done;
    assert.deepEqual(reasons, ["disconnect"]);
    assert.equal(dispatcher.connections, 1);
    await dispatcher.stop();
  });

  test("a drain while waiting to reconnect ends the wait: no new connection", async () => {
    const dispatcher = await FakeDispatcher.start();
    const logger = new RecordingLogger();
    const reconnect = { initialDelayMs: 60_000, maxDelayMs: 60_000 };
    const worker = startWorker(options(dispatcher, { logger, reconnect }));
    await (await dispatcher.accept()).register();
    await dispatcher.stop();
    await logger.logged("reconnecting in");
    const before = performance.now();
    await worker.drain();
    assert.ok(performance.now() - before < PROMPTLY_MS);
    assert.equal(dispatcher.connections, 1);
  });

  test("a drain before WorkerRegistered closes the connection with 1000 and ends", async () => {
    const dispatcher = await FakeDispatcher.start();
    const worker = startWorker(options(dispatcher));
    const peer = await dispatcher.accept();
    await peer.next((m) => m.type === "WorkerRegister"); // not answered
    await worker.drain();
    assert.equal(await peer.closed, 1000);
    assert.equal(dispatcher.connections, 1);
    await dispatcher.stop();
  });
});
