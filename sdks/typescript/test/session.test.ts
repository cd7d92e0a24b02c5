/**
 * The runtime, through stdio over in-memory pipes: results and errors,
 * concurrency, backpressure, Kill, timeouts, shutdown, malformed input.
 */

import assert from "node:assert/strict";
import { once } from "node:events";
import { describe, test } from "node:test";

import { defineHandler, TaskAbortedError, TaskFailure } from "trio-pipe-worker";
import type { Handlers, TaskContext } from "trio-pipe-worker";
import { dispatch, serveOverPipes } from "./helpers.js";

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
