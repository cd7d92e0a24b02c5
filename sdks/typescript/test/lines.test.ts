/** Splitting stdin into lines, and checking options before any I/O. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { runWorker, serveStdio } from "trio-pipe-worker";
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
