/**
 * The runtime, through stdio over in-memory pipes: results and errors,
 * concurrency (in all and per type), backpressure, Kill, timeouts, progress and
 * deadline extension, shutdown, drain, malformed input.
 */

import assert from "node:assert/strict";
import { once } from "node:events";
import { describe, test } from "node:test";

import { defineHandler, TaskAbortedError, TaskFailure } from "trio-pipe-worker";
import type { Handlers, TaskContext, TaskResult, WorkerMessage } from "trio-pipe-worker";
import { dispatch, serveOverPipes } from "./helpers.js";
import type { Peer } from "./helpers.js";

/**
 * A `gate` handler whose tasks run until the test releases them (in order) or,
 * unless `ignoreAbort`, until their signal aborts.
 */
function gated({ ignoreAbort = false } = {}): {
  handlers: Handlers;
  started: () => Promise<TaskContext>;
  release: (value: unknown) => void;
  aborted: TaskAbortedError[];
} {
  const running: TaskContext[] = [];
  const waiting: Array<(ctx: TaskContext) => void> = [];
  const releases: Array<(value: unknown) => void> = [];
  const aborted: TaskAbortedError[] = [];
  const handlers: Handlers = {
    gate: (_payload, ctx) =>
      new Promise((resolve, reject) => {
        releases.push(resolve);
        ctx.signal.addEventListener("abort", () => {
          aborted.push(ctx.signal.reason as TaskAbortedError);
          if (!ignoreAbort) reject(ctx.signal.reason);
        });
        const notify = waiting.shift();
        if (notify !== undefined) notify(ctx);
        else running.push(ctx);
      }),
  };
  const started = (): Promise<TaskContext> =>
    new Promise((resolve) => {
      const ctx = running.shift();
      if (ctx !== undefined) resolve(ctx);
      else waiting.push(resolve);
    });
  return { handlers, started, release: (value) => releases.shift()?.(value), aborted };
}

/**
 * A handler that counts the tasks running of each type, and their peaks, and
 * holds each until the test releases it.
 */
function counted(): {
  handler: Handlers[string];
  running: Map<string, number>;
  peaks: Map<string, number>;
  started: (count: number) => Promise<void>;
  release: (taskType: string) => void;
  releaseAll: () => void;
} {
  const running = new Map<string, number>();
  const peaks = new Map<string, number>();
  const held: Array<{ taskType: string; finish: () => void }> = [];
  let startedCount = 0;
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const handler: Handlers[string] = (_payload, { task: { taskType } }) =>
    new Promise((resolve) => {
      const now = (running.get(taskType) ?? 0) + 1;
      running.set(taskType, now);
      peaks.set(taskType, Math.max(peaks.get(taskType) ?? 0, now));
      held.push({
        taskType,
        finish: () => {
          running.set(taskType, (running.get(taskType) ?? 0) - 1);
          resolve(taskType);
        },
      });
      startedCount += 1;
      for (const waiter of waiters.filter((w) => w.count <= startedCount)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    });
  return {
    handler,
    running,
    peaks,
    started: (count) =>
      count <= startedCount ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve })),
    release: (taskType) => {
      const index = held.findIndex((h) => h.taskType === taskType);
      assert.ok(index >= 0, `no ${taskType} task is held`);
      held.splice(index, 1)[0]?.finish();
    },
    releaseAll: () => held.splice(0).forEach((h) => h.finish()),
  };
}

describe("results", () => {
  test("a completed task: the payload back, every field written canonically", async () => {
    const handlers: Handlers = { echo: (p) => p };
    const { peer, input, served } = serveOverPipes({ handlers, workerId: "w-1", maxConcurrency: 6 });
    const nested = { list: [1, 2.5, null, true], text: "héllo 🐍" };
    const payloads = [{ nested }, "日本語", 42, null, [], "x".repeat(256 * 1024)];
    const tasks = payloads.map((payload) => dispatch("echo", payload));
    for (const { frame } of tasks) peer.send(frame);
    for (const [i, { id }] of tasks.entries()) {
      const result = await peer.result(id);
      assert.deepEqual({ ...result, durationMs: 0 }, {
        taskId: id,
        status: "Completed",
        payload: payloads[i],
        error: null,
        durationMs: 0,
        workerId: "w-1",
      });
    }
    input.end();
    await served;
  });

  test("liberal input: lower-case enums, partial or no metadata, unknown fields", async () => {
    const { peer, input, served } = serveOverPipes({ handlers: { echo: (p) => p } });
    const id = "3B0F6C1E-5D2A-4E8B-9C47-1A2B3C4D5E6F";
    const task = { id, taskType: "echo", payload: 1, metadata: { priority: "high" }, extra: 1 };
    peer.send({ type: "taskdispatch", task });
    assert.equal((await peer.result(id.toLowerCase())).status, "Completed");
    input.end();
    await served;
  });

  test("a handler sees its task and worker id; undefined is sent as null", async () => {
    let seen: TaskContext | undefined;
    const handlers: Handlers = {
      look: (_payload, ctx) => {
        seen = ctx;
      },
    };
    const { peer, input, served } = serveOverPipes({ handlers, workerId: "w-2" });
    const { id, frame } = dispatch("look", { a: 1 }, { traceId: "trace-1", retryCount: 2 });
    peer.send(frame);
    assert.equal((await peer.result(id)).payload, null);
    assert.equal(seen?.workerId, "w-2");
    const { task } = seen ?? assert.fail("the handler did not run");
    const { traceId, retryCount } = task.metadata;
    assert.deepEqual([task.id, task.payload, traceId, retryCount], [id, { a: 1 }, "trace-1", 2]);
    assert.equal(seen?.signal.aborted, false);
    input.end();
    await served;
  });

  test("a handler sees the idempotency key and fencing token when the dispatcher sends them", async () => {
    const seen: TaskContext[] = [];
    const handlers: Handlers = {
      look: (_payload, ctx) => {
        seen.push(ctx);
      },
    };
    const { peer, input, served } = serveOverPipes({ handlers });
    const fenced = dispatch("look", null, { idempotencyKey: "order-42", attempt: 3, epoch: 0 });
    const plain = dispatch("look");
    for (const { id, frame } of [fenced, plain]) {
      peer.send(frame);
      assert.equal((await peer.result(id)).status, "Completed");
    }
    const tokens = seen.map(({ task: { metadata: m } }) => [m.idempotencyKey, m.attempt, m.epoch]);
    assert.deepEqual(tokens, [
      ["order-42", 3, 0],
      [undefined, undefined, undefined],
    ]);
    input.end();
    await served;
  });

  test("failures: an error thrown, a TaskFailure, a bad payload, a result not JSON, an unknown type", async () => {
    const handlers: Handlers = {
      fail: () => {
        throw new RangeError("disk full");
      },
      refuse: async () => {
        throw new TaskFailure("BAD_INPUT", "url must be absolute", { retryable: false });
      },
      typed: defineHandler(
        (payload) => {
          if (typeof payload !== "number") throw new TypeError("expected a number");
          return payload;
        },
        (n) => n * 2,
      ),
      bigint: () => 10n,
    };
    const { peer, input, served } = serveOverPipes({ handlers });
    const cases = {
      fail: { code: "HANDLER_ERROR", message: "RangeError: disk full", retryable: true },
      refuse: { code: "BAD_INPUT", message: "url must be absolute", retryable: false },
      typed: { code: "PARSE_ERROR", message: "invalid payload: TypeError: expected a number", retryable: false },
      bigint: {
        code: "PARSE_ERROR",
        message: "result payload is not JSON: TypeError: Do not know how to serialize a BigInt",
        retryable: false,
      },
      mystery: { code: "UNKNOWN_TASK_TYPE", message: "no handler for task type 'mystery'", retryable: false },
    };
    for (const [taskType, error] of Object.entries(cases)) {
      const { id, frame } = dispatch(taskType, "not a number");
      peer.send(frame);
      const result = await peer.result(id);
      assert.deepEqual([result.status, result.payload, result.error], ["Failed", null, error], taskType);
    }
    const { id, frame } = dispatch("typed", 21);
    peer.send(frame);
    assert.equal((await peer.result(id)).payload, 42);
    input.end();
    await served;
  });
});

describe("capacity", () => {
  test("beyond maxConcurrency a task is refused; Backpressure on filling up and freeing up", async () => {
    const gate = gated();
    const { peer, input, served } = serveOverPipes({ handlers: gate.handlers, maxConcurrency: 2, workerId: "w-3" });
    const [a, b, c] = [dispatch("gate"), dispatch("gate"), dispatch("gate")];
    peer.send(a.frame);
    await gate.started();
    assert.deepEqual(peer.untaken(), []);
    peer.send(b.frame);
    await gate.started();
    const full = await peer.next();
    assert.deepEqual(full, { type: "Backpressure", signal: { workerId: "w-3", currentLoad: 1, shouldThrottle: true } });
    peer.send(c.frame);
    const refused = await peer.result(c.id);
    assert.equal(refused.status, "Failed");
    const message = "the worker is running 2 tasks, its maximum";
    const saturated = { code: "WORKER_SATURATED", message, retryable: true };
    assert.deepEqual(refused.error, saturated);
    gate.release("first");
    assert.equal((await peer.next()).type, "TaskResult");
    const freed = await peer.next();
    const released = { workerId: "w-3", currentLoad: 0.5, shouldThrottle: false };
    assert.deepEqual(freed, { type: "Backpressure", signal: released });
    gate.release("second");
    assert.equal((await peer.result(b.id)).payload, "second");
    assert.deepEqual(peer.untaken(), []);
    input.end();
    await served;
  });

  test("maxConcurrencyByType: beyond a type's limit a task is refused; other types still run; peaks hold", async () => {
    const tasks = counted();
    const handlers: Handlers = { render: tasks.handler, fetch: tasks.handler };
    const limits = { maxConcurrency: 6, maxConcurrencyByType: { render: 2 } };
    const { peer, input, served } = serveOverPipes({ handlers, ...limits });
    const [r1, r2, r3] = [dispatch("render"), dispatch("render"), dispatch("render")];
    const fetches = [dispatch("fetch"), dispatch("fetch"), dispatch("fetch")];
    for (const { frame } of [r1, r2, r3, ...fetches]) peer.send(frame);
    const refused = await peer.result(r3.id);
    const message = "the worker is running 2 'render' tasks, its maximum for that type";
    assert.equal(refused.status, "Failed");
    assert.deepEqual(refused.error, { code: "WORKER_SATURATED", message, retryable: true });
    await tasks.started(5);
    assert.deepEqual(tasks.running, new Map([["render", 2], ["fetch", 3]]));
    tasks.release("render"); // a render finishes: its slot takes the next one
    assert.equal((await peer.result(r1.id)).status, "Completed");
    const r4 = dispatch("render");
    peer.send(r4.frame);
    await tasks.started(6);
    tasks.releaseAll();
    for (const { id } of [r2, r4, ...fetches]) assert.equal((await peer.result(id)).status, "Completed");
    assert.deepEqual(tasks.peaks, new Map([["render", 2], ["fetch", 3]]));
    input.end();
    await served;
  });

  test("a second dispatch of a running task is ignored", async () => {
    const gate = gated();
    const { peer, input, served, logger } = serveOverPipes({ handlers: gate.handlers, maxConcurrency: 4 });
    const task = dispatch("gate");
    peer.send(task.frame);
    await gate.started();
    peer.send(task.frame);
    await logger.logged(`ignoring a second dispatch of running task ${task.id}`);
    gate.release("once");
    assert.equal((await peer.result(task.id)).payload, "once");
    input.end();
    await served;
    assert.equal(peer.received.filter((m) => m.type === "TaskResult").length, 1);
  });
});

describe("cancellation", () => {
  test("Kill aborts the handler's signal and reports Cancelled/KILLED at once", async () => {
    const gate = gated();
    const { peer, input, served } = serveOverPipes({ handlers: gate.handlers });
    const task = dispatch("gate");
    peer.send(task.frame);
    await gate.started();
    peer.send({ type: "Kill", task_id: task.id, reason: "the caller was cancelled" });
    const result = await peer.result(task.id);
    assert.equal(result.status, "Cancelled");
    assert.deepEqual(result.error, { code: "KILLED", message: "the caller was cancelled", retryable: false });
    assert.deepEqual(gate.aborted.map((e) => [e.kind, e.message]), [["kill", "the caller was cancelled"]]);
    input.end();
    await served;
  });

  test("a Kill for a task not running is ignored", async () => {
    const { peer, input, served } = serveOverPipes({ handlers: { echo: (p) => p }, maxConcurrency: 2 });
    peer.send({ type: "Kill", taskId: "3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f" });
    const echo = dispatch("echo", 1);
    peer.send(echo.frame);
    assert.equal((await peer.next()).type, "TaskResult");
    input.end();
    await served;
  });

  test("timeoutMs, counted from receipt, aborts the handler and reports TimedOut/TIMEOUT", async () => {
    const gate = gated();
    const { peer, input, served } = serveOverPipes({ handlers: gate.handlers });
    const task = dispatch("gate", null, { timeoutMs: 50 });
    const sent = performance.now();
    peer.send(task.frame);
    const result = await peer.result(task.id);
    assert.ok(performance.now() - sent >= 45);
    assert.equal(result.status, "TimedOut");
    assert.deepEqual(result.error, { code: "TIMEOUT", message: "task exceeded its timeout of 50 ms", retryable: true });
    assert.ok(result.durationMs >= 45);
    assert.deepEqual(gate.aborted.map((e) => e.kind), ["timeout"]);
    input.end();
    await served;
  });

  test("a handler that ignores its signal is reported at once; its late result is dropped", async () => {
    const gate = gated({ ignoreAbort: true });
    const { peer, input, served } = serveOverPipes({ handlers: gate.handlers });
    const task = dispatch("gate", null, { timeoutMs: 10 });
    peer.send(task.frame);
    assert.equal((await peer.result(task.id)).status, "TimedOut");
    gate.release("late");
    const next = dispatch("gate");
    peer.send(next.frame);
    await gate.started();
    await gate.started();
    gate.release("in time");
    assert.equal((await peer.result(next.id)).payload, "in time");
    input.end();
    await served;
    assert.equal(peer.received.filter((m) => m.type === "TaskResult" && m.result.taskId === task.id).length, 1);
  });
});

describe("progress and deadline extension", () => {
  /** The `Running` reports received for `taskId`, in order, up to its terminal result (returned last). */
  async function reportsUntilDone(peer: Peer, taskId: string): Promise<TaskResult[]> {
    const reports: TaskResult[] = [];
    for (;;) {
      const result = await peer.result(taskId);
      reports.push(result);
      if (result.status !== "Running") return reports;
    }
  }

  test("progress reports arrive in order, shaped as the protocol says; none after the result", async () => {
    let late: TaskContext | undefined;
    const handlers: Handlers = {
      stages: (_payload, ctx) => {
        ctx.progress(0, "queued");
        ctx.progress(0.5, "stage 2");
        ctx.progress(null, "no idea how far");
        ctx.progress(1);
        late = ctx;
        return "done";
      },
    };
    const { peer, input, served } = serveOverPipes({ handlers, workerId: "w-p" });
    const task = dispatch("stages");
    peer.send(task.frame);
    const reports = await reportsUntilDone(peer, task.id);
    const running = { taskId: task.id, status: "Running", payload: null, error: null, workerId: "w-p" };
    assert.deepEqual(
      reports.map(({ durationMs: _, ...report }) => report),
      [
        ...[
          { fraction: 0, message: "queued" },
          { fraction: 0.5, message: "stage 2" },
          { fraction: null, message: "no idea how far" },
          { fraction: 1, message: null },
        ].map((progress) => ({ ...running, progress })),
        { taskId: task.id, status: "Completed", payload: "done", error: null, workerId: "w-p" },
      ],
    );
    late?.progress(0.9, "too late");
    const echo = dispatch("stages");
    peer.send(echo.frame);
    await reportsUntilDone(peer, echo.id);
    assert.equal(peer.received.filter((m) => m.type === "TaskResult" && m.result.taskId === task.id).length, 5);
    input.end();
    await served;
  });

  test("progress and extendDeadline refuse values the protocol has no room for", async () => {
    const thrown: string[] = [];
    const handlers: Handlers = {
      bad: (_payload, ctx) => {
        for (const call of [
          () => ctx.progress(1.5),
          () => ctx.progress(-0.1),
          () => ctx.progress(Number.NaN),
          () => ctx.progress(0.5, 42 as never),
          () => ctx.extendDeadline(0),
          () => ctx.extendDeadline(1.5),
          () => ctx.extendDeadline(Number.POSITIVE_INFINITY),
        ]) {
          try {
            call();
          } catch (error) {
            thrown.push((error as Error).name);
          }
        }
      },
    };
    const { peer, input, served } = serveOverPipes({ handlers });
    const task = dispatch("bad");
    peer.send(task.frame);
    const reports = await reportsUntilDone(peer, task.id);
    assert.deepEqual(reports.map((r) => r.status), ["Completed"]); // no report was sent
    const [range, type] = ["RangeError", "TypeError"];
    assert.deepEqual(thrown, [range, range, range, type, range, range, range]);
    input.end();
    await served;
  });

  test("extendDeadline sends extendMs and moves the task's own timeout clock", async () => {
    const gate = gated();
    const { peer, input, served } = serveOverPipes({ handlers: gate.handlers, workerId: "w-x" });
    const task = dispatch("gate", null, { timeoutMs: 100 });
    const sent = performance.now();
    peer.send(task.frame);
    (await gate.started()).extendDeadline(600);
    const [extension, timedOut] = await reportsUntilDone(peer, task.id);
    assert.deepEqual({ ...extension, durationMs: 0 }, {
      taskId: task.id,
      status: "Running",
      payload: null,
      error: null,
      durationMs: 0,
      workerId: "w-x",
      extendMs: 600,
    });
    assert.ok(performance.now() - sent >= 595, "timed out before the extended deadline");
    assert.equal(timedOut?.status, "TimedOut");
    const message = /^task exceeded its deadline, extended to (\d+) ms after receipt \(timeoutMs 100\)$/;
    const [, allowed] = message.exec(timedOut?.error?.message ?? "") ?? assert.fail(`${timedOut?.error?.message}`);
    assert.ok(Number(allowed) >= 600);
    assert.deepEqual(gate.aborted.map((e) => e.kind), ["timeout"]);
    input.end();
    await served;
  });

  test("an extension never brings the task's own deadline closer", async () => {
    const gate = gated();
    const { peer, input, served } = serveOverPipes({ handlers: gate.handlers });
    const task = dispatch("gate", null, { timeoutMs: 300 });
    const sent = performance.now();
    peer.send(task.frame);
    (await gate.started()).extendDeadline(1);
    const [extension, timedOut] = await reportsUntilDone(peer, task.id);
    assert.equal(extension?.extendMs, 1);
    assert.ok(performance.now() - sent >= 295, "timed out before timeoutMs");
    assert.equal(timedOut?.error?.message, "task exceeded its timeout of 300 ms");
    input.end();
    await served;
  });
});

describe("drain", () => {
  const isDraining = (m: WorkerMessage): boolean => m.type === "Backpressure" && m.signal.draining === true;

  test("tells the dispatcher once, refuses new tasks, lets those in flight finish, then ends", async () => {
    const gate = gated();
    const { peer, worker, served } = serveOverPipes({ handlers: gate.handlers, maxConcurrency: 4, workerId: "w-d" });
    const [a, b] = [dispatch("gate"), dispatch("gate")];
    peer.send(a.frame);
    peer.send(b.frame);
    await gate.started();
    await gate.started();
    const drained = worker.drain(60_000);
    const signal = { workerId: "w-d", currentLoad: 0.5, shouldThrottle: true, draining: true };
    assert.deepEqual(await peer.next(), { type: "Backpressure", signal });
    const crossing = dispatch("gate");
    peer.send(crossing.frame);
    const refused = await peer.result(crossing.id);
    const message = "the worker is shutting down";
    assert.deepEqual(refused.error, { code: "WORKER_SHUTTING_DOWN", message, retryable: true });
    gate.release("a");
    assert.equal((await peer.result(a.id)).payload, "a");
    gate.release("b");
    assert.equal((await peer.result(b.id)).payload, "b");
    await drained;
    await served;
    assert.deepEqual(gate.aborted, []);
    assert.deepEqual(peer.untaken(), []); // no Backpressure lifting the drain as slots free up
  });

  test("tasks running when the drain timeout runs out: aborted, reported Cancelled/WORKER_SHUTTING_DOWN", async () => {
    const gate = gated();
    const options = { handlers: gate.handlers, maxConcurrency: 2, drainTimeoutMs: 150 };
    const { peer, worker, served } = serveOverPipes(options);
    const [quick, slow] = [dispatch("gate"), dispatch("gate")];
    peer.send(quick.frame);
    peer.send(slow.frame);
    await gate.started();
    await gate.started();
    const drainedAt = performance.now();
    void worker.drain(); // the worker's drainTimeoutMs
    await peer.next(isDraining);
    gate.release("in time");
    assert.equal((await peer.result(quick.id)).payload, "in time");
    const cancelled = await peer.result(slow.id);
    assert.ok(performance.now() - drainedAt >= 145, "cancelled before the drain timeout");
    const message = "the worker is shutting down: its drain ended before the task did";
    assert.equal(cancelled.status, "Cancelled");
    assert.deepEqual(cancelled.error, { code: "WORKER_SHUTTING_DOWN", message, retryable: true });
    await served;
    assert.deepEqual(gate.aborted.map((e) => e.kind), ["shutdown"]);
  });

  test("a later drain can only bring the deadline closer: drain(0) cancels at once", async () => {
    const gate = gated();
    const { peer, worker, served } = serveOverPipes({ handlers: gate.handlers });
    const task = dispatch("gate");
    peer.send(task.frame);
    await gate.started();
    void worker.drain(60_000);
    await peer.next(isDraining);
    void worker.drain(120_000); // later: changes nothing
    await worker.drain(0);
    assert.equal((await peer.result(task.id)).status, "Cancelled");
    await served;
    assert.equal(peer.received.filter(isDraining).length, 1);
  });

  test("an idle worker drains at once; drain after the end changes nothing", async () => {
    const { peer, worker, served } = serveOverPipes({ handlers: { echo: (p) => p } });
    await worker.drain();
    await served;
    assert.deepEqual(peer.untaken().map((m) => m.type), ["Backpressure"]);
    await worker.drain(0);
    assert.equal(peer.received.length, 1);
  });

  test("the end of stdin during a drain: the tasks in flight still finish and are reported", async () => {
    const gate = gated();
    const { peer, input, worker, served } = serveOverPipes({ handlers: gate.handlers });
    const task = dispatch("gate");
    peer.send(task.frame);
    await gate.started();
    void worker.drain();
    await peer.next(isDraining);
    input.end();
    await once(input, "end");
    gate.release("done");
    assert.equal((await peer.result(task.id)).payload, "done");
    await served;
  });

  test("the drain timeout defaults to TRIO_PIPE_DRAIN_TIMEOUT_MS, which an explicit option overrides", async () => {
    const saved = process.env["TRIO_PIPE_DRAIN_TIMEOUT_MS"];
    process.env["TRIO_PIPE_DRAIN_TIMEOUT_MS"] = "0";
    try {
      for (const drainTimeoutMs of [undefined, 60_000]) {
        const gate = gated();
        const { peer, worker, served } = serveOverPipes({ handlers: gate.handlers, drainTimeoutMs });
        const task = dispatch("gate");
        peer.send(task.frame);
        await gate.started();
        void worker.drain();
        await peer.next(isDraining);
        if (drainTimeoutMs === undefined) {
          assert.equal((await peer.result(task.id)).status, "Cancelled"); // at once, though never released
        } else {
          gate.release("released");
          assert.equal((await peer.result(task.id)).status, "Completed");
        }
        await served;
      }
    } finally {
      if (saved === undefined) delete process.env["TRIO_PIPE_DRAIN_TIMEOUT_MS"];
      else process.env["TRIO_PIPE_DRAIN_TIMEOUT_MS"] = saved;
    }
  });
});

describe("shutdown and end of input", () => {
  test("graceful Shutdown: refuse new tasks, finish those in flight, then return", async () => {
    const gate = gated();
    const { peer, served } = serveOverPipes({ handlers: gate.handlers, maxConcurrency: 2 });
    const [a, b, late] = [dispatch("gate"), dispatch("gate"), dispatch("gate")];
    peer.send(a.frame);
    peer.send(b.frame);
    await gate.started();
    await gate.started();
    peer.send({ type: "Shutdown", graceful: true });
    peer.send(late.frame);
    assert.deepEqual((await peer.result(late.id)).error, {
      code: "WORKER_SHUTTING_DOWN",
      message: "the worker is shutting down",
      retryable: true,
    });
    gate.release(1);
    gate.release(2);
    assert.deepEqual([(await peer.result(a.id)).payload, (await peer.result(b.id)).payload], [1, 2]);
    await served;
    assert.deepEqual(gate.aborted, []);
  });

  test("Shutdown not graceful: every task in flight reported Cancelled, then return", async () => {
    const gate = gated();
    const { peer, served } = serveOverPipes({ handlers: gate.handlers, maxConcurrency: 2 });
    const [a, b] = [dispatch("gate"), dispatch("gate")];
    peer.send(a.frame);
    peer.send(b.frame);
    await gate.started();
    await gate.started();
    peer.send({ type: "Shutdown", graceful: false });
    for (const { id } of [a, b]) {
      const result = await peer.result(id);
      assert.equal(result.status, "Cancelled");
      assert.equal(result.error?.code, "WORKER_SHUTTING_DOWN");
    }
    await served;
    assert.deepEqual(gate.aborted.map((e) => e.kind), ["shutdown", "shutdown"]);
  });

  test("end of input after Shutdown: the tasks in flight still finish and are reported", async () => {
    const gate = gated();
    const { peer, input, served } = serveOverPipes({ handlers: gate.handlers });
    const task = dispatch("gate");
    peer.send(task.frame);
    await gate.started();
    peer.send({ type: "Shutdown" });
    input.end();
    await once(input, "end");
    gate.release("done");
    assert.equal((await peer.result(task.id)).payload, "done");
    await served;
  });

  test("end of input without Shutdown: handlers aborted, nothing reported, return", async () => {
    const gate = gated();
    const { peer, input, served } = serveOverPipes({ handlers: gate.handlers, maxConcurrency: 2 });
    peer.send(dispatch("gate").frame);
    await gate.started();
    input.end();
    await served;
    assert.deepEqual(gate.aborted.map((e) => e.kind), ["disconnect"]);
    assert.deepEqual(peer.untaken(), []);
  });

  test("the worker's own signal: handlers aborted, nothing reported, return", async () => {
    const gate = gated();
    const stop = new AbortController();
    const { peer, served } = serveOverPipes({ handlers: gate.handlers, signal: stop.signal, maxConcurrency: 2 });
    peer.send(dispatch("gate").frame);
    await gate.started();
    stop.abort();
    await served;
    assert.deepEqual(gate.aborted.map((e) => e.kind), ["stop"]);
    assert.deepEqual(peer.untaken(), []);
  });
});

describe("heartbeats", () => {
  test("every heartbeatIntervalMs, with the active tasks, capacity and uptime", async () => {
    const gate = gated();
    const { handlers } = gate;
    const options = { handlers, maxConcurrency: 3, heartbeatIntervalMs: 20, workerId: "hb" };
    const { peer, input, served } = serveOverPipes(options);
    const idle = await peer.next((m) => m.type === "Heartbeat");
    const payload = { workerId: "hb", activeTasks: 0, capacity: 3, uptimeSeconds: 0 };
    assert.deepEqual(idle, { type: "Heartbeat", payload });
    peer.send(dispatch("gate").frame);
    await gate.started();
    const busy = await peer.next((m) => m.type === "Heartbeat" && m.payload.activeTasks === 1);
    assert.equal(busy.type === "Heartbeat" && busy.payload.capacity, 3);
    input.end();
    await served;
  });

});

describe("malformed input", () => {
  test("skipped, never answered, never fatal; logged as a warning when it has a type", async () => {
    const handlers: Handlers = { echo: (p) => p };
    const { peer, input, served, logger } = serveOverPipes({ handlers, maxConcurrency: 2, maxLineBytes: 1000 });
    const lines = [
      "not JSON at all",
      "[1, 2]",
      '{"no": "type"}',
      "",
      '{"type": "Hello"}',
      '{"type": "TaskDispatch", "task": {"taskType": "echo"}}',
      '{"type": "Kill", "taskId": "3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f"}',
      '{"type": "TaskResult", "result": {"taskId": "3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f", "status": "Completed"}}',
      `{"type": "Shutdown", "pad": "${"x".repeat(2000)}"}`,
    ];
    for (const line of lines) peer.send(line);
    const echo = dispatch("echo", "still here");
    peer.send(echo.frame);
    const answer = await peer.next(); // the first answer at all
    assert.equal(answer.type === "TaskResult" && answer.result.taskId, echo.id);
    input.end();
    await served;
    const warnings = logger.lines.filter((line) => line.startsWith("warn:"));
    assert.equal(warnings.length, 3, warnings.join("\n"));
    assert.match(warnings[0] ?? "", /unknown message type 'Hello'/);
    assert.match(warnings[1] ?? "", /required field missing @ \$\.task\.id/);
    assert.match(warnings[2] ?? "", /skipping an input line of \d+ bytes/);
  });
});
