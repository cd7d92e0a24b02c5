/** Splitting stdin into lines, and checking options before any I/O. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { runWorker, serveStdio, startStdio, startWorker } from "trio-pipe-worker";
import { LineSplitter } from "../src/stdio.js";

function split(chunks: readonly Buffer[], maxBytes = 100): { lines: string[]; tooLong: string[] } {
  const lines: string[] = [];
  const tooLong: string[] = [];
  const splitter = new LineSplitter(maxBytes, (line) => lines.push(line), (size) => tooLong.push(size));
  for (const chunk of chunks) splitter.push(chunk);
  splitter.end();
  return { lines, tooLong };
}

describe("LineSplitter", () => {
  test("lines across chunks, a character split between chunks, a last line without newline", () => {
    const bytes = Buffer.from("first\nsec🐍nd\n\nlast");
    const chunks = [bytes.subarray(0, 3), bytes.subarray(3, 10), bytes.subarray(10, 16), bytes.subarray(16)];
    assert.deepEqual(split(chunks), { lines: ["first", "sec🐍nd", "", "last"], tooLong: [] });
  });

  test("an over-long line is dropped, whether its newline comes in the same chunk or later", () => {
    const long = "x".repeat(150);
    assert.deepEqual(split([Buffer.from(`${long}\nafter\n`)]), { lines: ["after"], tooLong: ["150"] });
    const chunks = [Buffer.from(long.slice(0, 80)), Buffer.from(long.slice(80)), Buffer.from("yyy\nafter")];
    assert.deepEqual(split(chunks), { lines: ["after"], tooLong: ["more than 100"] });
  });

  test("a line of exactly the limit is kept", () => {
    assert.deepEqual(split([Buffer.from(`${"x".repeat(100)}\n`)]).lines, ["x".repeat(100)]);
  });
});

describe("options are checked before any I/O", () => {
  const handlers = { echo: (payload: unknown) => payload };
  const url = "ws://127.0.0.1:1";
  const cases: Array<[string, () => Promise<void>, RegExp]> = [
    ["no handlers", () => runWorker({ url, handlers: {} }), /at least one handler/],
    ["a handler that is not a function", () => serveStdio({ handlers: { x: 5 as never } }), /expected a function/],
    ["a bad worker id", () => runWorker({ url, handlers, workerId: "-w" }), /invalid worker id/],
    ["maxConcurrency 0", () => serveStdio({ handlers, maxConcurrency: 0 }), /maxConcurrency/],
    ["an http URL", () => runWorker({ url: "http://127.0.0.1:1", handlers }), /ws:\/\/ or wss:\/\//],
    ["a zero heartbeat interval", () => runWorker({ url, handlers, heartbeatIntervalMs: 0 }), /heartbeatIntervalMs/],
    [
      "a backoff bound below its start",
      () => runWorker({ url, handlers, reconnect: { initialDelayMs: 10, maxDelayMs: 5 } }),
      /maxDelayMs/,
    ],
    [
      "a per-type limit for a type without a handler",
      () => runWorker({ url, handlers, maxConcurrencyByType: { render: 1 } }),
      /maxConcurrencyByType names task type 'render', which has no handler/,
    ],
    [
      "a per-type limit of 0",
      () => serveStdio({ handlers, maxConcurrencyByType: { echo: 0 } }),
      /maxConcurrencyByType\['echo'\] must be an integer from 1 to maxConcurrency \(1\), got 0/,
    ],
    [
      "a per-type limit above maxConcurrency",
      () => runWorker({ url, handlers, maxConcurrency: 4, maxConcurrencyByType: { echo: 5 } }),
      /from 1 to maxConcurrency \(4\), got 5/,
    ],
    ["a fractional per-type limit", () => serveStdio({ handlers, maxConcurrencyByType: { echo: 0.5 } }), /got 0.5/],
    ["a negative drain timeout", () => serveStdio({ handlers, drainTimeoutMs: -1 }), /drainTimeoutMs must be/],
    ["a drain timeout too long for a timer", () => runWorker({ url, handlers, drainTimeoutMs: 2 ** 31 }), /2147483647/],
    ["handleSignals not a boolean", () => serveStdio({ handlers, handleSignals: "no" as never }), /handleSignals/],
  ];
  for (const [name, run, message] of cases) {
    test(name, async () => {
      await assert.rejects(
        run,
        (error: Error) => (error instanceof TypeError || error instanceof RangeError) && message.test(error.message),
      );
    });
  }
});

describe("options of the start functions and of drain()", () => {
  const handlers = { echo: (payload: unknown) => payload };

  test("startWorker and startStdio throw at once for invalid options", () => {
    assert.throws(() => startWorker({ url: "http://x", handlers }), TypeError);
    assert.throws(() => startStdio({ handlers, maxConcurrencyByType: { echo: 2 } }), RangeError);
  });

  test("a bad TRIO_PIPE_DRAIN_TIMEOUT_MS is named in the error, unless the option is given", () => {
    const saved = process.env["TRIO_PIPE_DRAIN_TIMEOUT_MS"];
    process.env["TRIO_PIPE_DRAIN_TIMEOUT_MS"] = "soon";
    try {
      assert.throws(() => startStdio({ handlers }), {
        name: "RangeError",
        message: "TRIO_PIPE_DRAIN_TIMEOUT_MS must be milliseconds from 0 to 2147483647, got 'soon'",
      });
      const worker = startStdio({ handlers, drainTimeoutMs: 5, signal: AbortSignal.abort() });
      return worker.done;
    } finally {
      if (saved === undefined) delete process.env["TRIO_PIPE_DRAIN_TIMEOUT_MS"];
      else process.env["TRIO_PIPE_DRAIN_TIMEOUT_MS"] = saved;
    }
  });

  test("drain() rejects a bad timeout with RangeError", async () => {
    const worker = startStdio({ handlers, signal: AbortSignal.abort() });
    await assert.rejects(worker.drain(-5), RangeError);
    await assert.rejects(worker.drain(Number.NaN), RangeError);
    await worker.done;
  });
});
