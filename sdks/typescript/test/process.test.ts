/** The conformance worker as a real process: it picks its mode, serves, and exits when it should. */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { describe, test } from "node:test";

import { dispatch, FakeDispatcher, Peer } from "./helpers.js";
import { LineSplitter } from "../src/stdio.js";
import { SDK_DIR } from "./paths.js";

const WORKER = join(SDK_DIR, "conformance-worker");
const ENV = {
  TRIO_PIPE_WORKER_ID: "conformance-0badcafe",
  TRIO_PIPE_MAX_CONCURRENCY: "2",
  TRIO_PIPE_HEARTBEAT_MS: "250",
  TRIO_PIPE_LOG_LEVEL: "error",
};

interface Launched {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<number | null>;
}

function launch(args: string[], env: Record<string, string> = {}): Launched {
  const { TRIO_PIPE_URL: _ignored, ...inherited } = process.env;
  const child = spawn(WORKER, args, { env: { ...inherited, ...ENV, ...env } });
  child.stderr.pipe(process.stderr); // errors only: a clean run logs nothing
  return { child, exited: once(child, "exit").then(([code]) => code as number | null) };
}

/** The dispatcher's end of a child's stdin/stdout. */
function pipePeer(child: ChildProcessWithoutNullStreams): Peer {
  const peer = new Peer((frame) => child.stdin.write(`${frame}\n`));
  const lines = new LineSplitter(Infinity, (line) => peer.receive(line), () => {});
  child.stdout.on("data", (chunk: Buffer) => lines.push(chunk));
  return peer;
}

describe("the conformance worker process", () => {
  test("stdio: serves, heartbeats, and exits 0 after a graceful Shutdown", async () => {
    const { child, exited } = launch([]);
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
    const { child, exited } = launch([]);
    child.stdin.end();
    assert.equal(await exited, 0);
  });

  test("WebSocket, from the URL in its last argument: registers as told, exits 0 after Shutdown", async () => {
    const dispatcher = await FakeDispatcher.start();
    const { exited } = launch(["--some-flag", dispatcher.url]);
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

  test("WebSocket, from TRIO_PIPE_URL: SIGTERM stops it", async () => {
    const dispatcher = await FakeDispatcher.start();
    const { child, exited } = launch([], { TRIO_PIPE_URL: dispatcher.url });
    const peer = await dispatcher.accept();
    await peer.register();
    child.kill("SIGTERM");
    assert.equal(await peer.closed, 1001);
    assert.equal(await exited, 0);
    await dispatcher.stop();
  });
});
