/**
 * Worker processes, for real: the conformance worker picks its mode, serves, and
 * exits when it should; SIGTERM and SIGINT drain it (the draining Backpressure,
 * the tasks in flight finished or cancelled, close 1000 or the end of stdout, exit
 * status 0 or 130), and a second signal stops it at once.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { afterEach, describe, test } from "node:test";

import { dispatch, FakeDispatcher, Peer, PROMPTLY_MS } from "./helpers.js";
import type { TaskResult, WorkerMessage } from "trio-pipe-worker";
import { LineSplitter } from "../src/stdio.js";
import { SDK_DIR } from "./paths.js";

const CONFORMANCE_WORKER = join(SDK_DIR, "conformance-worker");
/** Its `stubborn` handler ignores its signal, and keeps the process alive while it runs. */
const STUBBORN_WORKER = join(SDK_DIR, "dist/test/fixtures/stubborn-worker.js");
const ENV = {
  TRIO_PIPE_WORKER_ID: "conformance-0badcafe",
  TRIO_PIPE_MAX_CONCURRENCY: "2",
  TRIO_PIPE_HEARTBEAT_MS: "250",
  TRIO_PIPE_LOG_LEVEL: "error",
};

interface Launched {
  readonly child: ChildProcessWithoutNullStreams;
  /** The exit status; `null` if a signal ended the process. */
  readonly exited: Promise<number | null>;
  /** Everything it wrote to stderr, once it has exited. */
  readonly stderr: Promise<string>;
}

/** The processes of the current test: a test that fails leaves none behind. */
const children = new Set<ChildProcessWithoutNullStreams>();
afterEach(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  children.clear();
});

function launch(command: string[], env: Record<string, string> = {}): Launched {
  const { TRIO_PIPE_URL: _url, TRIO_PIPE_DRAIN_TIMEOUT_MS: _drain, ...inherited } = process.env;
  const [program, ...args] = command as [string, ...string[]];
  const child = spawn(program, args, { env: { ...inherited, ...ENV, ...env } });
  children.add(child);
  const chunks: Buffer[] = [];
  child.stderr.on("data", (chunk: Buffer) => chunks.push(chunk));
  const exited = once(child, "exit").then(([code]) => code as number | null);
  const stderr = exited.then(() => Buffer.concat(chunks).toString("utf8"));
  void stderr.then((text) => process.stderr.write(text)); // errors only: a clean run logs nothing
  return { child, exited, stderr };
}

/** The dispatcher's end of a child's stdin/stdout; `ended` resolves when its stdout ends. */
function pipePeer(child: ChildProcessWithoutNullStreams): Peer & { readonly ended: Promise<void> } {
  const peer = new Peer((frame) => child.stdin.write(`${frame}\n`));
  const lines = new LineSplitter(Infinity, (line) => peer.receive(line), () => {});
  child.stdout.on("data", (chunk: Buffer) => lines.push(chunk));
  return Object.assign(peer, { ended: once(child.stdout, "end").then(() => undefined) });
}

type Mode = "WebSocket" | "stdio";

interface Served extends Launched {
  readonly peer: Peer;
  /** Resolves once the worker has closed its end: WebSocket close code 1000, or the end of its stdout. */
  closedCleanly(): Promise<void>;
  /** Stop the stand-in dispatcher, if any. */
  cleanUp(): Promise<void>;
}

/** A worker launched in `mode`: over WebSocket to a fresh stand-in dispatcher (registered), or over stdio. */
async function launchIn(mode: Mode, command: string[], env: Record<string, string> = {}): Promise<Served> {
  if (mode === "stdio") {
    const launched = launch(command, env);
    const peer = pipePeer(launched.child);
    return { ...launched, peer, closedCleanly: () => peer.ended, cleanUp: async () => {} };
  }
  const dispatcher = await FakeDispatcher.start();
  const launched = launch([...command, dispatcher.url], env);
  const peer = await dispatcher.accept();
  await peer.register();
  const closedCleanly = async (): Promise<void> => assert.equal(await peer.closed, 1000);
  return { ...launched, peer, closedCleanly, cleanUp: () => dispatcher.stop() };
}

const isDraining = (m: WorkerMessage): boolean => m.type === "Backpressure" && m.signal.draining === true;

/** The result has `status` and the error a drain reports: `WORKER_SHUTTING_DOWN`, retryable. */
function assertShuttingDown(result: TaskResult, status: "Failed" | "Cancelled"): void {
  const { code, retryable } = result.error ?? {};
  assert.deepEqual([result.status, code, retryable], [status, "WORKER_SHUTTING_DOWN", true]);
}

/** A stack trace's frame lines, which a clean stop never prints. */
const STACK_FRAME = /^\s+at /m;

describe("the conformance worker process", () => {
  test("stdio: serves, heartbeats, and exits 0 after a graceful Shutdown", async () => {
    const { child, exited } = launch([CONFORMANCE_WORKER]);
    const peer = pipePeer(child);
    const heartbeat = await peer.next((m) => m.type === "Heartbeat");
    assert.ok(heartbeat.type === "Heartbeat");
    assert.deepEqual([heartbeat.payload.workerId, heartbeat.payload.capacity], ["conformance-0badcafe", 2]);
    const sleep = dispatch("sleep", { ms: 50 });
    peer.send(sleep.frame);
    peer.send({ type: "Shutdown", graceful: true });
    assert.deepEqual((await peer.result(sleep.id)).payload, { sleptMs: 50 });
    assert.equal(await exited, 0);
  });

  test("stdio: exits 0 when stdin closes", async () => {
    const { child, exited } = launch([CONFORMANCE_WORKER]);
    child.stdin.end();
    assert.equal(await exited, 0);
  });

  test("WebSocket, from the URL in its last argument: registers as told, exits 0 after Shutdown", async () => {
    const dispatcher = await FakeDispatcher.start();
    const { exited } = launch([CONFORMANCE_WORKER, "--some-flag", dispatcher.url]);
    const peer = await dispatcher.accept();
    const registration = await peer.register();
    assert.deepEqual({ ...registration, supportedTasks: [...registration.supportedTasks].sort() }, {
      workerId: "conformance-0badcafe",
      supportedTasks: ["echo", "fail", "sleep"],
      maxConcurrency: 2,
      language: "TypeScript",
      tags: [],
    });
    const fail = dispatch("fail", { message: "on purpose" });
    peer.send(fail.frame);
    const { error } = await peer.result(fail.id);
    assert.deepEqual(error, { code: "HANDLER_ERROR", message: "Error: on purpose", retryable: true });
    peer.send({ type: "Shutdown" });
    assert.equal(await peer.closed, 1000);
    assert.equal(await exited, 0);
    await dispatcher.stop();
  });

  test("WebSocket, from TRIO_PIPE_URL: an idle worker drains at once on SIGTERM", async () => {
    const dispatcher = await FakeDispatcher.start();
    const { child, exited } = launch([CONFORMANCE_WORKER], { TRIO_PIPE_URL: dispatcher.url });
    const peer = await dispatcher.accept();
    await peer.register();
    child.kill("SIGTERM");
    const draining = { workerId: "conformance-0badcafe", currentLoad: 0, shouldThrottle: true, draining: true };
    assert.deepEqual(await peer.next(), { type: "Backpressure", signal: draining });
    assert.equal(await peer.closed, 1000);
    assert.equal(await exited, 0);
    await dispatcher.stop();
  });
});

describe("SIGTERM and SIGINT drain a worker process", () => {
  test("WebSocket, SIGTERM with tasks in flight: they finish, a crossing one is refused, close 1000", async () => {
    const dispatcher = await FakeDispatcher.start();
    const { child, exited, stderr } = launch([CONFORMANCE_WORKER, dispatcher.url]);
    const peer = await dispatcher.accept();
    await peer.register();
    const tasks = [dispatch("sleep", { ms: 400 }), dispatch("sleep", { ms: 400 })];
    for (const { frame } of tasks) peer.send(frame);
    await peer.next((m) => m.type === "Backpressure" && m.signal.shouldThrottle); // both running
    child.kill("SIGTERM");
    const drainingAt = await peer.next(isDraining);
    assert.ok(drainingAt.type === "Backpressure" && drainingAt.signal.currentLoad === 1);
    const crossing = dispatch("echo", "too late");
    peer.send(crossing.frame);
    assertShuttingDown(await peer.result(crossing.id), "Failed");
    for (const { id } of tasks) assert.deepEqual((await peer.result(id)).payload, { sleptMs: 400 });
    assert.equal(await peer.closed, 1000);
    assert.equal(await exited, 0);
    assert.doesNotMatch(await stderr, STACK_FRAME);
    assert.equal(dispatcher.connections, 1); // no reconnection after a drain
    assert.deepEqual(peer.untaken(), []); // and no Backpressure lifting the drain
    await dispatcher.stop();
  });

  test("stdio, SIGTERM with tasks in flight: they complete, then stdout ends and the exit status is 0", async () => {
    const { child, exited, stderr } = launch([CONFORMANCE_WORKER]);
    const peer = pipePeer(child);
    const tasks = [dispatch("sleep", { ms: 300 }), dispatch("sleep", { ms: 300 })];
    for (const { frame } of tasks) peer.send(frame);
    await peer.next((m) => m.type === "Backpressure" && m.signal.shouldThrottle); // both running
    child.kill("SIGTERM");
    await peer.next(isDraining);
    for (const { id } of tasks) {
      const result = await peer.result(id);
      assert.deepEqual([result.status, result.payload], ["Completed", { sleptMs: 300 }]);
    }
    await peer.ended;
    assert.equal(await exited, 0);
    assert.doesNotMatch(await stderr, STACK_FRAME);
  });

  for (const mode of ["WebSocket", "stdio"] as const) {
    test(`${mode}: a task outliving TRIO_PIPE_DRAIN_TIMEOUT_MS: Cancelled, WORKER_SHUTTING_DOWN`, async () => {
      const worker = await launchIn(mode, [CONFORMANCE_WORKER], { TRIO_PIPE_DRAIN_TIMEOUT_MS: "300" });
      const task = dispatch("sleep", { ms: 30_000 });
      worker.peer.send(task.frame);
      await worker.peer.next((m) => m.type === "Heartbeat" && m.payload.activeTasks === 1);
      const signalledAt = performance.now();
      worker.child.kill("SIGTERM");
      await worker.peer.next(isDraining);
      assertShuttingDown(await worker.peer.result(task.id), "Cancelled");
      assert.ok(performance.now() - signalledAt >= 290, "cancelled before the drain timeout ran out");
      await worker.closedCleanly();
      assert.equal(await worker.exited, 0);
      await worker.cleanUp();
    });
  }

  test("stdio, SIGINT: drains the same way and exits 130, without a stack trace", async () => {
    const { child, exited, stderr } = launch([CONFORMANCE_WORKER]);
    const peer = pipePeer(child);
    const tasks = [dispatch("sleep", { ms: 300 }), dispatch("sleep", { ms: 300 })];
    for (const { frame } of tasks) peer.send(frame);
    await peer.next((m) => m.type === "Backpressure" && m.signal.shouldThrottle); // both running
    child.kill("SIGINT");
    await peer.next(isDraining);
    for (const { id } of tasks) assert.equal((await peer.result(id)).status, "Completed");
    assert.equal(await exited, 130);
    assert.doesNotMatch(await stderr, STACK_FRAME);
  });

  for (const mode of ["WebSocket", "stdio"] as const) {
    test(`${mode}: a second SIGTERM cancels at once and exits, though a handler ignores its signal`, async () => {
      const worker = await launchIn(mode, ["node", STUBBORN_WORKER]);
      const task = dispatch("stubborn", { ms: 60_000 });
      worker.peer.send(task.frame);
      await worker.peer.next((m) => m.type === "Backpressure"); // its one slot is taken: the task runs
      worker.child.kill("SIGTERM");
      await worker.peer.next(isDraining);
      const secondAt = performance.now();
      worker.child.kill("SIGTERM");
      assertShuttingDown(await worker.peer.result(task.id), "Cancelled");
      await worker.closedCleanly();
      assert.equal(await worker.exited, 0);
      assert.ok(performance.now() - secondAt < PROMPTLY_MS, "the second signal did not stop the process at once");
      assert.doesNotMatch(await worker.stderr, STACK_FRAME);
      await worker.cleanUp();
    });
  }
});
