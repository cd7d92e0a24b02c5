/**
 * The worker the conformance kit runs (`trio-pipe conformance -- sdks/typescript/conformance-worker`):
 * serves `echo`, `sleep` and `fail`, over WebSocket when a ws:// URL is the last
 * argument or in TRIO_PIPE_URL, else over stdin/stdout. SIGTERM and SIGINT drain it
 * (the SDK's own signal handling), within TRIO_PIPE_DRAIN_TIMEOUT_MS when that is set.
 * It sends TRIO_PIPE_TOKEN in its handshake, and for wss:// trusts TRIO_PIPE_CAFILE and
 * presents TRIO_PIPE_CERTFILE / TRIO_PIPE_KEYFILE; a refused handshake ends it with status 1.
 */
import { setTimeout as sleep } from "node:timers/promises";

import { defineHandler, runWorker, serveStdio, WorkerConnectionError } from "trio-pipe-worker";
import type { Handlers } from "trio-pipe-worker";

const handlers: Handlers = {
  echo: (payload) => payload,
  sleep: defineHandler(parseSleep, async ({ ms }, { signal }) => {
    await sleep(ms, undefined, { signal });
    return { sleptMs: ms };
  }),
  fail: defineHandler(parseFail, ({ message }) => {
    throw new Error(message);
  }),
};

function parseSleep(payload: unknown): { ms: number } {
  const ms = (payload as { ms?: unknown } | null)?.ms;
  if (typeof ms !== "number" || !(ms >= 0)) throw new TypeError('expected {"ms": a number >= 0}');
  return { ms };
}

function parseFail(payload: unknown): { message: string } {
  const message = (payload as { message?: unknown } | null)?.message;
  if (typeof message !== "string") throw new TypeError('expected {"message": a string}');
  return { message };
}

function numberFromEnv(name: string): number | undefined {
  const value = process.env[name];
  return value === undefined || value === "" ? undefined : Number(value);
}

const options = {
  handlers,
  workerId: process.env["TRIO_PIPE_WORKER_ID"],
  maxConcurrency: numberFromEnv("TRIO_PIPE_MAX_CONCURRENCY"),
  heartbeatIntervalMs: numberFromEnv("TRIO_PIPE_HEARTBEAT_MS"),
};
const url = [process.argv.slice(2).at(-1), process.env["TRIO_PIPE_URL"]].find((arg) => /^wss?:\/\//.test(arg ?? ""));
if (url === undefined) {
  await serveStdio(options);
} else {
  // The SDK takes the token from TRIO_PIPE_TOKEN; TLS files come from the environment too.
  const tls = url.startsWith("wss://")
    ? {
        ca: process.env["TRIO_PIPE_CAFILE"] || undefined,
        cert: process.env["TRIO_PIPE_CERTFILE"] || undefined,
        key: process.env["TRIO_PIPE_KEYFILE"] || undefined,
      }
    : {};
  try {
    await runWorker({ url, ...options, ...tls });
  } catch (error) {
    if (!(error instanceof WorkerConnectionError)) throw error;
    process.stderr.write(`conformance-worker: ${error.message}\n`); // a refused token: "... (HTTP 401): ..."
    process.exitCode = 1;
  }
}
