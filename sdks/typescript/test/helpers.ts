/** Test doubles: the dispatcher's side of a stdio pipe or a WebSocket, checking everything the worker writes. */

import { randomUUID } from "node:crypto";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { PassThrough } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";

import { WebSocketServer } from "ws";
import type WebSocket from "ws";

import { decode, encode, startStdio } from "trio-pipe-worker";
import type {
  Logger,
  Message,
  RunningWorker,
  StdioOptions,
  TaskMetadata,
  TaskResult,
  WorkerMessage,
} from "trio-pipe-worker";
import { LineSplitter } from "../src/stdio.js";
import { messageProblems } from "./schema.js";

/** Generous bound for anything the worker should do "at once". */
export const PROMPTLY_MS = 5_000;

/** A logger that keeps every line, for assertions. */
export class RecordingLogger implements Logger {
  readonly lines: string[] = [];
  private readonly waiters: Array<{ readonly text: string; readonly resolve: (line: string) => void }> = [];
  debug = (message: string): void => this.record(`debug: ${message}`);
  info = (message: string): void => this.record(`info: ${message}`);
  warn = (message: string): void => this.record(`warn: ${message}`);
  error = (message: string): void => this.record(`error: ${message}`);

  /** Resolves once a line containing `text` has been logged. */
  async logged(text: string, timeoutMs = PROMPTLY_MS): Promise<string> {
    const line = this.lines.find((candidate) => candidate.includes(text));
    if (line !== undefined) return line;
    const waiter = { text, resolve: (_line: string): void => {} };
    const found = new Promise<string>((resolve) => (waiter.resolve = resolve));
    this.waiters.push(waiter);
    const timeout = sleep(timeoutMs, undefined, { ref: false }).then(() => {
      throw new Error(`no log line with '${text}' within ${timeoutMs} ms; logged:\n${this.lines.join("\n")}`);
    });
    return Promise.race([found, timeout]);
  }

  private record(line: string): void {
    this.lines.push(line);
    for (const waiter of this.waiters.filter((w) => line.includes(w.text))) {
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve(line);
    }
  }
}

/** A `TaskDispatch` frame for a fresh task id. */
export function dispatch(taskType: string, payload: unknown = null, metadata: Partial<TaskMetadata> = {}): {
  id: string;
  frame: string;
} {
  const id = randomUUID();
  return { id, frame: JSON.stringify({ type: "TaskDispatch", task: { id, taskType, payload, metadata } }) };
}

interface Waiter {
  readonly test: (message: WorkerMessage) => boolean;
  readonly resolve: (message: WorkerMessage) => void;
}

/**
 * The dispatcher's end of one connection. Every message the worker writes must
 * be canonical (it re-encodes to the same text) and conform to the schema;
 * otherwise it lands in {@link problems} and {@link next} throws.
 */
export class Peer {
  readonly problems: string[] = [];
  /** Every message received, in order (heartbeats included). */
  readonly received: WorkerMessage[] = [];
  private readonly queue: WorkerMessage[] = [];
  private readonly waiters: Waiter[] = [];

  constructor(private readonly write: (frame: string) => void) {}

  /** Send a message (an object is JSON-encoded; a string goes as it is). */
  send(message: object | string): void {
    this.write(typeof message === "string" ? message : JSON.stringify(message));
  }

  /** Called with each frame the worker wrote. */
  receive(frame: string): void {
    let message: Message;
    try {
      message = decode(frame);
    } catch (error) {
      this.problems.push(`undecodable: ${frame.slice(0, 200)}: ${String(error)}`);
      return;
    }
    if (encode(message) !== frame) this.problems.push(`not canonical: ${frame.slice(0, 200)}`);
    if (!["WorkerRegister", "Heartbeat", "TaskResult", "Backpressure"].includes(message.type)) {
      this.problems.push(`not a worker message: ${frame.slice(0, 200)}`);
    }
    this.problems.push(...messageProblems(JSON.parse(frame) as Message).map((p) => `${p} in ${frame.slice(0, 200)}`));
    const workerMessage = message as WorkerMessage;
    this.received.push(workerMessage);
    const waiter = this.waiters.findIndex((w) => w.test(workerMessage));
    if (waiter >= 0) this.waiters.splice(waiter, 1)[0]?.resolve(workerMessage);
    else this.queue.push(workerMessage);
  }

  /** The first message not taken yet that passes `test` (by default, any but a heartbeat). */
  async next(
    test: (message: WorkerMessage) => boolean = (m) => m.type !== "Heartbeat",
    timeoutMs = PROMPTLY_MS,
  ): Promise<WorkerMessage> {
    if (this.problems.length > 0) throw new Error(`the worker wrote bad messages:\n${this.problems.join("\n")}`);
    const index = this.queue.findIndex(test);
    if (index >= 0) return this.queue.splice(index, 1)[0] as WorkerMessage;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        test,
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        const received = JSON.stringify(this.received).slice(-800);
        reject(new Error(`no such message within ${timeoutMs} ms; the last received: ${received}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** The result reported for `taskId`. */
  async result(taskId: string, timeoutMs = PROMPTLY_MS): Promise<TaskResult> {
    const message = await this.next((m) => m.type === "TaskResult" && m.result.taskId === taskId, timeoutMs);
    return (message as Extract<WorkerMessage, { type: "TaskResult" }>).result;
  }

  /** Messages received and not taken yet, heartbeats left out. */
  untaken(): WorkerMessage[] {
    return this.queue.filter((m) => m.type !== "Heartbeat");
  }
}

/** A worker served over in-memory stdin/stdout streams, and the dispatcher's end of them. */
export interface StdioHarness {
  readonly peer: Peer;
  readonly input: PassThrough;
  readonly logger: RecordingLogger;
  /** The handle startStdio returned (it installs no signal handler). */
  readonly worker: RunningWorker;
  /** Its `done`: what serveStdio would return. */
  readonly served: Promise<void>;
}

export function serveOverPipes(options: Omit<StdioOptions, "input" | "output">): StdioHarness {
  const input = new PassThrough();
  const output = new PassThrough();
  const logger = new RecordingLogger();
  const peer = new Peer((frame) => input.write(`${frame}\n`));
  const lines = new LineSplitter(Infinity, (line) => peer.receive(line), () => {});
  output.on("data", (chunk: Buffer) => lines.push(chunk));
  const worker = startStdio({ logger, ...options, input, output });
  return { peer, input, logger, worker, served: worker.done };
}

/** The dispatcher's end of a WebSocket. */
export class SocketPeer extends Peer {
  /** Resolves with the close code once the connection is closed. */
  readonly closed: Promise<number>;

  constructor(readonly socket: WebSocket) {
    super((frame) => socket.send(frame));
    socket.on("message", (data: Buffer) => {
      this.receive(data.toString("utf8"));
    });
    this.closed = once(socket, "close").then(([code]) => code as number);
  }

  /** Wait for `WorkerRegister`, answer `WorkerRegistered`; the registration. */
  async register(): Promise<Extract<WorkerMessage, { type: "WorkerRegister" }>["registration"]> {
    const message = await this.next((m) => m.type === "WorkerRegister");
    if (message.type !== "WorkerRegister") throw new Error("unreachable");
    this.send({ type: "WorkerRegistered", workerId: message.registration.workerId });
    return message.registration;
  }
}

/** A WebSocket server standing in for the dispatcher; answers every heartbeat, as the dispatcher does. */
export class FakeDispatcher {
  private readonly waiting: SocketPeer[] = [];
  private readonly accepting: Array<(peer: SocketPeer) => void> = [];
  private server: WebSocketServer;
  private port = 0;
  /** Connections accepted so far. */
  connections = 0;

  private constructor(private readonly ackHeartbeats: boolean) {
    this.server = this.listen();
  }

  static async start({ ackHeartbeats = true } = {}): Promise<FakeDispatcher> {
    const dispatcher = new FakeDispatcher(ackHeartbeats);
    await once(dispatcher.server, "listening");
    dispatcher.port = (dispatcher.server.address() as AddressInfo).port;
    return dispatcher;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** The next connection. */
  async accept(): Promise<SocketPeer> {
    const peer = this.waiting.shift();
    if (peer !== undefined) return peer;
    return new Promise((resolve) => this.accepting.push(resolve));
  }

  /** Stop listening and drop every connection (the worker sees them lost). */
  async stop(): Promise<void> {
    for (const client of this.server.clients) client.terminate();
    await new Promise((resolve) => this.server.close(resolve));
  }

  /** Listen again on the same port. */
  async restart(): Promise<void> {
    this.server = this.listen(this.port);
    await once(this.server, "listening");
  }

  private listen(port = 0): WebSocketServer {
    const server = new WebSocketServer({ host: "127.0.0.1", port });
    server.on("connection", (socket) => {
      this.connections += 1;
      const peer = new SocketPeer(socket);
      if (this.ackHeartbeats) {
        socket.on("message", (data: Buffer) => {
          if (data.toString("utf8").startsWith('{"type":"Heartbeat"')) socket.send('{"type":"HeartbeatAck"}');
        });
      }
      const accept = this.accepting.shift();
      if (accept !== undefined) accept(peer);
      else this.waiting.push(peer);
    });
    return server;
  }
}
