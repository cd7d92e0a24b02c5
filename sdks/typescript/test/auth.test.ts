/** Credentials: the token in the handshake, refusals that end the worker, and TLS (docs/protocol.md, "Credentials"). */

import assert from "node:assert/strict";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer } from "node:https";
import type { IncomingMessage, Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, test } from "node:test";

import { WebSocketServer } from "ws";
import type WebSocket from "ws";

import { HandshakeRefusedError, RegistrationRefusedError, runWorker, WorkerConnectionError } from "trio-pipe-worker";
import type { RunWorkerOptions } from "trio-pipe-worker";
import { RecordingLogger, SocketPeer } from "./helpers.js";
import { SPEC_DIR } from "./paths.js";

const TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJl";
const TLS_DIR = join(SPEC_DIR, "tls");
const pem = (name: string): Buffer => readFileSync(join(TLS_DIR, name));

/** How the stand-in dispatcher answers a handshake: accept it, or refuse it with an HTTP status and a body. */
type Answer = { readonly accept: true } | { readonly status: number; readonly body: string };
const ACCEPT: Answer = { accept: true };

/** A dispatcher that checks credentials: records each handshake's request, answers it as told. */
class AuthDispatcher {
  readonly requests: IncomingMessage[] = [];
  private readonly peers: SocketPeer[] = [];
  private readonly waiting: Array<(peer: SocketPeer) => void> = [];

  private constructor(
    private readonly server: WebSocketServer,
    readonly url: string,
    private readonly https: Server | undefined,
  ) {}

  /** `answers[i]` answers the i-th handshake; the last one answers the rest. */
  static async start(answers: readonly Answer[], tls?: { requestCert: boolean }): Promise<AuthDispatcher> {
    let https: Server | undefined;
    if (tls !== undefined) {
      https = createServer({
        cert: pem("server.pem"),
        key: pem("server.key"),
        ca: pem("ca.pem"),
        requestCert: tls.requestCert,
        rejectUnauthorized: tls.requestCert,
      });
      https.listen(0, "127.0.0.1");
      await once(https, "listening");
    }
    let dispatcher: AuthDispatcher | undefined;
    const server = new WebSocketServer({
      ...(https === undefined ? { host: "127.0.0.1", port: 0 } : { server: https }),
      verifyClient: (info, callback) => {
        const requests = (dispatcher as AuthDispatcher).requests;
        requests.push(info.req);
        const answer = answers[Math.min(requests.length, answers.length) - 1] as Answer;
        if ("accept" in answer) callback(true);
        else callback(false, answer.status, answer.body);
      },
    });
    if (https === undefined) await once(server, "listening");
    const port = ((https ?? server).address() as AddressInfo).port;
    dispatcher = new AuthDispatcher(server, `${https ? "wss" : "ws"}://127.0.0.1:${port}/workers`, https);
    server.on("connection", (socket: WebSocket) => dispatcher.arrived(new SocketPeer(socket)));
    return dispatcher;
  }

  header(index: number, name: string): string | undefined {
    return this.requests[index]?.headers[name] as string | undefined;
  }

  async accept(): Promise<SocketPeer> {
    return this.peers.shift() ?? new Promise((resolve) => this.waiting.push(resolve));
  }

  async stop(): Promise<void> {
    for (const client of this.server.clients) client.terminate();
    await new Promise((resolve) => this.server.close(resolve));
    if (this.https !== undefined) {
      this.https.closeAllConnections();
      await new Promise((resolve) => this.https?.close(resolve));
    }
  }

  private arrived(peer: SocketPeer): void {
    const waiter = this.waiting.shift();
    if (waiter === undefined) this.peers.push(peer);
    else waiter(peer);
  }
}

const started: AuthDispatcher[] = [];
async function dispatcher(answers: readonly Answer[] = [ACCEPT], tls?: { requestCert: boolean }): Promise<AuthDispatcher> {
  const server = await AuthDispatcher.start(answers, tls);
  started.push(server);
  return server;
}

afterEach(async () => {
  delete process.env["TRIO_PIPE_TOKEN"];
  await Promise.all(started.splice(0).map((server) => server.stop()));
});

function options(url: string, extra: Partial<RunWorkerOptions> = {}): RunWorkerOptions {
  return {
    url,
    handlers: { echo: (payload) => payload },
    workerId: "ts-auth-1",
    reconnect: { initialDelayMs: 5, maxDelayMs: 20 },
    handleSignals: false,
    logger: new RecordingLogger(),
    ...extra,
  };
}

/** Register the worker, then shut it down: its run resolves. */
async function registerThenShutDown(server: AuthDispatcher): Promise<void> {
  const peer = await server.accept();
  await peer.register();
  peer.send({ type: "Shutdown", graceful: true });
}

describe("the token", () => {
  test("goes in the Authorization header, never in the URL", async () => {
    const server = await dispatcher();
    const worker = runWorker(options(server.url, { token: TOKEN }));
    await registerThenShutDown(server);
    await worker;
    assert.equal(server.header(0, "authorization"), `Bearer ${TOKEN}`);
    assert.equal(server.requests[0]?.url, "/workers");
  });

  test("comes from TRIO_PIPE_TOKEN, and the option wins over it", async () => {
    process.env["TRIO_PIPE_TOKEN"] = "from-the-environment";
    const server = await dispatcher();
    let worker = runWorker(options(server.url));
    await registerThenShutDown(server);
    await worker;
    worker = runWorker(options(server.url, { token: "from-the-option" }));
    await registerThenShutDown(server);
    await worker;
    assert.equal(server.header(0, "authorization"), "Bearer from-the-environment");
    assert.equal(server.header(1, "authorization"), "Bearer from-the-option");
  });

  test("is not sent when there is none (an empty TRIO_PIPE_TOKEN is none)", async () => {
    process.env["TRIO_PIPE_TOKEN"] = "";
    const server = await dispatcher();
    const worker = runWorker(options(server.url));
    await registerThenShutDown(server);
    await worker;
    assert.equal(server.header(0, "authorization"), undefined);
  });

  test("is never logged, not even at debug level", async () => {
    const server = await dispatcher([ACCEPT, { status: 401, body: "token revoked" }]);
    const logger = new RecordingLogger();
    const worker = runWorker(options(server.url, { token: TOKEN, logger }));
    await registerThenShutDown(server);
    await worker;
    await assert.rejects(runWorker(options(server.url, { token: TOKEN, logger })), HandshakeRefusedError);
    assert.ok(logger.lines.some((line) => line.startsWith("debug: ")));
    assert.ok(!logger.lines.some((line) => line.includes(TOKEN)), logger.lines.join("\n"));
  });

  test("that cannot be a header is refused before any I/O, without showing it", async () => {
    for (const token of ["", "two words", "line\nbreak", "café"]) {
      await assert.rejects(runWorker(options("ws://127.0.0.1:1", { token })), (error: Error) => {
        return error instanceof TypeError && /token/.test(error.message) && (token === "" || !error.message.includes(token));
      });
    }
  });
});

describe("a refused handshake", () => {
  for (const [status, reason] of [
    [401, "token expired"],
    [403, "worker id ts-auth-1 not allowed"],
  ] as const) {
    test(`with ${status} rejects with HandshakeRefusedError at once, without reconnecting`, async () => {
      const server = await dispatcher([{ status, body: reason }]);
      const error = await runWorker(options(server.url, { token: TOKEN })).then(
        () => assert.fail("resolved"),
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof HandshakeRefusedError);
      assert.ok(error instanceof WorkerConnectionError);
      assert.deepEqual([error.status, error.reason], [status, reason]);
      assert.equal(error.message, `the dispatcher refused the connection (HTTP ${status}): ${reason}`);
      assert.equal(server.requests.length, 1);
    });
  }

  test("with another status (503 at the connection limit) is retried", async () => {
    const busy: Answer = { status: 503, body: "at the connection limit" };
    const server = await dispatcher([busy, busy, ACCEPT]);
    const logger = new RecordingLogger();
    const worker = runWorker(options(server.url, { token: TOKEN, logger }));
    await registerThenShutDown(server);
    await worker;
    assert.equal(server.requests.length, 3);
    await logger.logged("the dispatcher refused the connection (HTTP 503): at the connection limit; reconnecting in");
  });
});

describe("a refused registration", () => {
  test("(1008 before WorkerRegistered) rejects with RegistrationRefusedError, without reconnecting", async () => {
    const server = await dispatcher();
    const worker = runWorker(options(server.url));
    const peer = await server.accept();
    await peer.next((message) => message.type === "WorkerRegister");
    peer.socket.close(1008, "task type 'echo' is outside the token's scope");
    const error = await worker.then(
      () => assert.fail("resolved"),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof RegistrationRefusedError);
    assert.equal(error.reason, "task type 'echo' is outside the token's scope");
    assert.equal(error.message, "the dispatcher refused the registration: task type 'echo' is outside the token's scope");
    assert.equal(server.requests.length, 1);
  });

  test("but a 1008 once registered is a lost connection: the worker reconnects", async () => {
    const server = await dispatcher();
    const worker = runWorker(options(server.url));
    const peer = await server.accept();
    await peer.register();
    peer.socket.close(1008, "invalid TaskResult");
    await registerThenShutDown(server);
    await worker;
    assert.equal(server.requests.length, 2);
  });
});

describe("TLS", () => {
  test("with a CA and a client certificate (paths), mutual TLS accepts the worker", async () => {
    const server = await dispatcher([ACCEPT], { requestCert: true });
    const files = { ca: join(TLS_DIR, "ca.pem"), cert: join(TLS_DIR, "client.pem"), key: join(TLS_DIR, "client.key") };
    const worker = runWorker(options(server.url, { ...files, token: TOKEN }));
    await registerThenShutDown(server);
    await worker;
    assert.equal(server.header(0, "authorization"), `Bearer ${TOKEN}`);
  });

  test("PEM contents work as well as paths", async () => {
    const server = await dispatcher([ACCEPT], { requestCert: true });
    const files = { ca: pem("ca.pem").toString(), cert: pem("client.pem"), key: [pem("client.key")] };
    const worker = runWorker(options(server.url, files));
    await registerThenShutDown(server);
    await worker;
  });

  test("without a client certificate, the refusal is reported as a TLS failure", async () => {
    const server = await dispatcher([ACCEPT], { requestCert: true });
    const port = new URL(server.url).port;
    await assert.rejects(runWorker(options(server.url, { ca: join(TLS_DIR, "ca.pem"), reconnect: false })), {
      name: "WorkerConnectionError",
      message: `worker ts-auth-1: TLS handshake with 127.0.0.1:${port} failed: tlsv13 alert certificate required (the server requires a client certificate)`,
    });
  });

  test("an untrusted server certificate is reported as one, and retried", async () => {
    const server = await dispatcher([ACCEPT], { requestCert: false });
    const port = new URL(server.url).port;
    const logger = new RecordingLogger();
    const worker = runWorker(options(server.url, { logger, reconnect: { initialDelayMs: 5, maxDelayMs: 5, maxRetries: 2 } }));
    await assert.rejects(worker, {
      message: `worker ts-auth-1: TLS handshake with 127.0.0.1:${port} failed: certificate verify failed: self-signed certificate in certificate chain`,
    });
    await logger.logged("certificate verify failed: self-signed certificate in certificate chain; reconnecting in");
  });

  test("options are for wss:// only, and a file that cannot be read is an error before any I/O", async () => {
    await assert.rejects(runWorker(options("ws://127.0.0.1:1", { ca: join(TLS_DIR, "ca.pem") })), {
      name: "TypeError",
      message: "ca: TLS options are for wss:// URLs only",
    });
    await assert.rejects(runWorker(options("wss://127.0.0.1:1", { cert: "/nonexistent/client.pem" })), (error: Error) => {
      return error instanceof TypeError && error.message.startsWith("cert: cannot read /nonexistent/client.pem: ");
    });
  });
});
