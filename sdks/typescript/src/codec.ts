/**
 * `decode` and `encode` between protocol messages and JSON text.
 *
 * Liberal on input: the `type` tag and enums in any ASCII case (an enum of several
 * words also in snake_case: "timed_out"), defaults for missing optional fields, the
 * `task_id` / `worker_id` aliases on `Kill` / `WorkerRegistered`, `language` as
 * `{"Other": ...}`, unknown members ignored. Exact on output: compact JSON, every
 * field, camelCase names in the protocol's order, PascalCase enums; the optional
 * extension fields (`draining`, `progress`, `extendMs`, `maxConcurrencyByType`, and
 * `idempotencyKey`, `attempt`, `epoch` in a task's metadata) only when they hold
 * something, so that every other message keeps rust-pipe v0.1's shape.
 * A decoded message has those fields under the same rule: absent, not `false`,
 * `null` or `{}`; and a terminal `TaskResult` never has `progress` or `extendMs`
 * (they are ignored on input, as unknown members are).
 */

import type {
  BackpressureSignal,
  HeartbeatPayload,
  Json,
  Message,
  Priority,
  Task,
  TaskError,
  TaskMetadata,
  TaskProgress,
  TaskResult,
  TaskStatus,
  WorkerRegistration,
} from "./messages.js";
import { isValidWorkerId } from "./messages.js";
import { canonicalTimestamp, canonicalUuid, timestampNow } from "./values.js";

/** How a frame breaks the protocol: the `class` names of spec/vectors/invalid.json. */
export type ProtocolErrorKind =
  | "not JSON"
  | "not an object"
  | "missing type"
  | "type not a string"
  | "unknown type"
  | "missing field"
  | "mistyped field"
  | "bad enum value"
  | "out of range"
  | "bad worker id"
  | "bad UUID"
  | "bad timestamp";

/** A frame that is not a valid protocol message. `message` ends with the path of the bad value. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";

  constructor(
    readonly kind: ProtocolErrorKind,
    message: string,
  ) {
    super(message);
  }
}

const DEFAULT_TIMEOUT_MS = 300_000;
const DEFAULT_MAX_RETRIES = 3;

const PRIORITIES: readonly Priority[] = ["Low", "Normal", "High", "Critical"];
const STATUSES: readonly TaskStatus[] = [
  "Pending",
  "Dispatched",
  "Running",
  "Completed",
  "Failed",
  "TimedOut",
  "Cancelled",
];
const TERMINAL: ReadonlySet<TaskStatus> = new Set(["Completed", "Failed", "TimedOut", "Cancelled"]);

// ---------------------------------------------------------------------------
// decode

/** Parse one frame into a message. Throws only {@link ProtocolError}. */
export function decode(frame: string): Message {
  const value = parseJson(frame);
  if (!isObject(value)) {
    throw new ProtocolError("not an object", `expected a JSON object, got ${describe(value)}`);
  }
  const tag = value["type"];
  if (tag === undefined || tag === null) throw new ProtocolError("missing type", "missing message type");
  if (typeof tag !== "string") throw new ProtocolError("type not a string", "message type must be a string");
  const decodeBody = isAscii(tag) ? BODIES.get(tag.toLowerCase()) : undefined;
  if (decodeBody === undefined) {
    throw new ProtocolError("unknown type", `unknown message type ${quote(tag)}`);
  }
  return decodeBody(new Fields(value, "$"));
}

type JsonObject = { readonly [member: string]: Json };

function parseJson(text: string): Json {
  try {
    return JSON.parse(text, rejectInfinity) as Json;
  } catch (error) {
    if (error instanceof ProtocolError) throw error;
    throw new ProtocolError("not JSON", `not JSON: ${(error as Error).message}`);
  }
}

/** JSON.parse reads `1e999` as Infinity; the protocol (like RFC 8259's doubles) does not. */
function rejectInfinity(_key: string, value: unknown): unknown {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new ProtocolError("not JSON", "not JSON: a number is out of range for a double");
  }
  return value;
}

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describe(value: Json | undefined): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function quote(text: string): string {
  return `'${text.slice(0, 64)}'`;
}

/** Reads the members of one JSON object, naming each bad value by its path. */
class Fields {
  constructor(
    private readonly object: JsonObject,
    readonly path: string,
  ) {}

  /** A required member, read by `read`. */
  required<T>(name: string, read: Reader<T>): T {
    const value = this.get(name);
    if (value === undefined) {
      throw new ProtocolError("missing field", `required field missing @ ${this.path}.${name}`);
    }
    return read(value, `${this.path}.${name}`);
  }

  /** An optional member, read by `read` when present (even as null). */
  optional<T>(name: string, read: Reader<T>, fallback: () => T): T {
    const value = this.get(name);
    return value === undefined ? fallback() : read(value, `${this.path}.${name}`);
  }

  /** A required member that may also be spelled `alias` (`name` wins when both are present). */
  aliased<T>(name: string, alias: string, read: Reader<T>): T {
    return this.get(name) === undefined && this.get(alias) !== undefined
      ? this.required(alias, (value) => read(value, `${this.path}.${name}`))
      : this.required(name, read);
  }

  private get(name: string): Json | undefined {
    return Object.hasOwn(this.object, name) ? this.object[name] : undefined;
  }
}

type Reader<T> = (value: Json, path: string) => T;

function mistyped(expected: string, value: Json, path: string): ProtocolError {
  return new ProtocolError("mistyped field", `expected ${expected}, got ${describe(value)} @ ${path}`);
}

const readString: Reader<string> = (value, path) => {
  if (typeof value !== "string") throw mistyped("a string", value, path);
  return value;
};

const readNullableString: Reader<string | null> = (value, path) =>
  value === null ? null : readString(value, path);

const readBoolean: Reader<boolean> = (value, path) => {
  if (typeof value !== "boolean") throw mistyped("a boolean", value, path);
  return value;
};

const readNumber: Reader<number> = (value, path) => {
  if (typeof value !== "number") throw mistyped("a number", value, path);
  return value;
};

const readJson: Reader<Json> = (value) => value;

/**
 * An integer of at least `minimum`. JSON.parse cannot tell `3.0` or `1e3` from `3`
 * or `1000`, so those are accepted as integers.
 */
function readInteger(minimum: number): Reader<number> {
  return (value, path) => {
    if (typeof value !== "number" || !Number.isInteger(value)) throw mistyped("an integer", value, path);
    if (value < minimum) {
      const name = path.slice(path.lastIndexOf(".") + 1);
      throw new ProtocolError("out of range", `${name} must be >= ${minimum}, got ${value} @ ${path}`);
    }
    return value;
  };
}

const readCount = readInteger(0);

/** `read`, or `null` for a null value. */
function nullable<T>(read: Reader<T>): Reader<T | null> {
  return (value, path) => (value === null ? null : read(value, path));
}

/** `fields` without its null members: an extension field that holds nothing is absent. */
function present<T extends object>(fields: T): { [K in keyof T]?: NonNullable<T[K]> } {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== null)) as {
    [K in keyof T]?: NonNullable<T[K]>;
  };
}

/** A progress fraction: a number from 0 to 1. */
const readFraction: Reader<number> = (value, path) => {
  const fraction = readNumber(value, path);
  if (!(fraction >= 0 && fraction <= 1)) {
    throw new ProtocolError("out of range", `fraction must be from 0 to 1, got ${fraction} @ ${path}`);
  }
  return fraction;
};

function readObject<T>(read: (fields: Fields) => T): Reader<T> {
  return (value, path) => {
    if (!isObject(value)) throw mistyped("an object", value, path);
    return read(new Fields(value, path));
  };
}

/** `null` means an empty list. */
const readStringList: Reader<string[]> = (value, path) => {
  if (value === null) return [];
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw mistyped("a list of strings", value, path);
  }
  return value as string[];
};

/**
 * Whether `text` is ASCII only: then `toLowerCase` folds A-Z and nothing else. (On other
 * text it does more: "\u212A", the Kelvin sign, becomes "k".)
 */
function isAscii(text: string): boolean {
  return /^[\x00-\x7f]*$/.test(text);
}

/**
 * An enum value as the protocol spells it on input: its PascalCase name or, for a name
 * of several words, its snake_case ("TimedOut", "timed_out"), in any ASCII case; no
 * other separator, no underscore elsewhere, no non-ASCII letter.
 */
function readEnum<T extends string>(what: string, values: readonly T[]): Reader<T> {
  const byKey = new Map<string, T>();
  for (const v of values) {
    byKey.set(v.toLowerCase(), v);
    byKey.set(v.replace(/(?<=[a-z0-9])(?=[A-Z])/g, "_").toLowerCase(), v);
  }
  return (value, path) => {
    if (typeof value !== "string") throw mistyped(`a ${what} string`, value, path);
    const found = isAscii(value) ? byKey.get(value.toLowerCase()) : undefined;
    if (found === undefined) throw new ProtocolError("bad enum value", `unknown ${what} ${quote(value)} @ ${path}`);
    return found;
  };
}

const readUuid: Reader<string> = (value, path) => {
  if (typeof value !== "string") {
    throw new ProtocolError("bad UUID", `expected a UUID string, got ${describe(value)} @ ${path}`);
  }
  const uuid = canonicalUuid(value);
  if (uuid === undefined) throw new ProtocolError("bad UUID", `not a UUID: ${quote(value)} @ ${path}`);
  return uuid;
};

const readTimestamp: Reader<string> = (value, path) => {
  if (typeof value !== "string") {
    throw new ProtocolError("bad timestamp", `expected an RFC 3339 timestamp, got ${describe(value)} @ ${path}`);
  }
  const timestamp = canonicalTimestamp(value);
  if (timestamp === undefined) {
    throw new ProtocolError("bad timestamp", `not an RFC 3339 timestamp in years 1-9999: ${quote(value)} @ ${path}`);
  }
  return timestamp;
};

const readWorkerId: Reader<string> = (value, path) => {
  const id = readString(value, path);
  if (!isValidWorkerId(id)) throw new ProtocolError("bad worker id", `invalid worker id ${quote(id)} @ ${path}`);
  return id;
};

/** A string, or rust-pipe's single-member object such as `{"Other": "wasm"}`. */
const readLanguage: Reader<string> = (value, path) => {
  if (isObject(value)) {
    const members = Object.values(value);
    if (members.length === 1) return readString(members[0] as Json, path);
  }
  return readString(value, path);
};

const readMetadata = readObject<TaskMetadata>((f) => ({
  createdAt: f.optional("createdAt", readTimestamp, timestampNow),
  timeoutMs: f.optional("timeoutMs", readCount, () => DEFAULT_TIMEOUT_MS),
  priority: f.optional("priority", readEnum("priority", PRIORITIES), () => "Normal"),
  retryCount: f.optional("retryCount", readCount, () => 0),
  maxRetries: f.optional("maxRetries", readCount, () => DEFAULT_MAX_RETRIES),
  traceId: f.optional("traceId", readNullableString, () => null),
  ...present({
    idempotencyKey: f.optional("idempotencyKey", readNullableString, () => null),
    attempt: f.optional("attempt", nullable(readInteger(1)), () => null),
    epoch: f.optional("epoch", nullable(readCount), () => null),
  }),
}));

const readTask = readObject<Task>((f) => ({
  id: f.required("id", readUuid),
  taskType: f.required("taskType", readString),
  payload: f.optional("payload", readJson, () => null),
  metadata: f.optional("metadata", readMetadata, () => readMetadata({}, "$")),
}));

const readTaskError = readObject<TaskError>((f) => ({
  code: f.required("code", readString),
  message: f.required("message", readString),
  retryable: f.optional("retryable", readBoolean, () => false),
}));

const readProgress = readObject<TaskProgress>((f) => ({
  fraction: f.optional("fraction", nullable(readFraction), () => null),
  message: f.optional("message", readNullableString, () => null),
}));

/** A terminal result carries no progress and no extension: those members are ignored, as unknown ones are. */
const readTaskResult = readObject<TaskResult>((f) => {
  const result = {
    taskId: f.required("taskId", readUuid),
    status: f.required("status", readEnum("task status", STATUSES)),
    payload: f.optional("payload", readJson, () => null),
    error: f.optional("error", nullable(readTaskError), () => null),
    durationMs: f.optional("durationMs", readCount, () => 0),
    workerId: f.optional("workerId", readString, () => ""),
  };
  if (TERMINAL.has(result.status)) return result;
  return {
    ...result,
    ...present({
      progress: f.optional("progress", nullable(readProgress), () => null),
      extendMs: f.optional("extendMs", nullable(readInteger(1)), () => null),
    }),
  };
});

/** Task type -> an integer >= 1; `null` means none. */
const readLimits: Reader<Record<string, number>> = (value, path) => {
  if (value === null) return {};
  if (!isObject(value)) throw mistyped("an object", value, path);
  const readLimit = readInteger(1);
  return Object.fromEntries(Object.entries(value).map(([type, limit]) => [type, readLimit(limit, `${path}.${type}`)]));
};

const readRegistration = readObject<WorkerRegistration>((f) => {
  const registration = {
    workerId: f.required("workerId", readWorkerId),
    supportedTasks: f.required("supportedTasks", readStringList),
    maxConcurrency: f.optional("maxConcurrency", readInteger(1), () => 1),
    language: f.optional("language", readLanguage, () => "Unknown"),
    tags: f.optional("tags", readStringList, () => []),
  };
  const byType = f.optional("maxConcurrencyByType", readLimits, () => ({}));
  for (const [type, limit] of Object.entries<number>(byType)) {
    if (limit > registration.maxConcurrency) {
      throw new ProtocolError(
        "out of range",
        `maxConcurrencyByType['${type}'] must be <= maxConcurrency (${registration.maxConcurrency}), ` +
          `got ${limit} @ ${f.path}.maxConcurrencyByType`,
      );
    }
  }
  return { ...registration, ...(Object.keys(byType).length === 0 ? {} : { maxConcurrencyByType: byType }) };
});

const readHeartbeat = readObject<HeartbeatPayload>((f) => ({
  workerId: f.required("workerId", readString),
  activeTasks: f.optional("activeTasks", readCount, () => 0),
  capacity: f.optional("capacity", readCount, () => 0),
  uptimeSeconds: f.optional("uptimeSeconds", readCount, () => 0),
}));

const readSignal = readObject<BackpressureSignal>((f) => ({
  workerId: f.required("workerId", readString),
  currentLoad: f.optional("currentLoad", readNumber, () => 0),
  shouldThrottle: f.optional("shouldThrottle", readBoolean, () => false),
  ...(f.optional("draining", readBoolean, () => false) ? { draining: true as const } : {}),
}));

/** Each message's body reader, by its lower-case `type` tag. */
const BODIES = new Map<string, (f: Fields) => Message>([
  ["taskdispatch", (f) => ({ type: "TaskDispatch", task: f.required("task", readTask) })],
  [
    "kill",
    (f) => ({
      type: "Kill",
      taskId: f.aliased("taskId", "task_id", readUuid),
      reason: f.optional("reason", readString, () => ""),
    }),
  ],
  ["shutdown", (f) => ({ type: "Shutdown", graceful: f.optional("graceful", readBoolean, () => true) })],
  ["workerregistered", (f) => ({ type: "WorkerRegistered", workerId: f.aliased("workerId", "worker_id", readString) })],
  ["heartbeatack", () => ({ type: "HeartbeatAck" })],
  ["workerregister", (f) => ({ type: "WorkerRegister", registration: f.required("registration", readRegistration) })],
  ["heartbeat", (f) => ({ type: "Heartbeat", payload: f.required("payload", readHeartbeat) })],
  ["taskresult", (f) => ({ type: "TaskResult", result: f.required("result", readTaskResult) })],
  ["backpressure", (f) => ({ type: "Backpressure", signal: f.required("signal", readSignal) })],
]);

// ---------------------------------------------------------------------------
// encode

/**
 * The canonical JSON text of `message`. Members are written in the protocol's
 * order whatever the order of the object's own properties; a payload is written
 * as `JSON.stringify` writes it (`undefined` as `null`). Throws `TypeError` for a
 * payload that is not JSON-serialisable (a BigInt, a cycle) and `RangeError` for a
 * `currentLoad` or progress `fraction` that is not finite.
 */
/** The languages rust-pipe 0.1's dispatcher knows by name. */
const RUST_PIPE_LANGUAGES: ReadonlySet<string> = new Set(["TypeScript", "Python", "Go"]);

/**
 * A worker's `language` as rust-pipe 0.1 writes it, so that its dispatcher can read
 * the registration: one of the names it knows as a string, any other as
 * `{"Other": name}` (it refuses `"Java"`).
 */
function languageJson(language: string): string | { Other: string } {
  return RUST_PIPE_LANGUAGES.has(language) ? language : { Other: language };
}

export function encode(message: Message): string {
  switch (message.type) {
    case "TaskDispatch":
      return json({ type: message.type, task: taskJson(message.task) });
    case "Kill":
      return json({ type: message.type, taskId: message.taskId, reason: message.reason });
    case "Shutdown":
      return json({ type: message.type, graceful: message.graceful });
    case "WorkerRegistered":
      return json({ type: message.type, workerId: message.workerId });
    case "HeartbeatAck":
      return json({ type: message.type });
    case "WorkerRegister": {
      const r = message.registration;
      const byType = r.maxConcurrencyByType ?? {};
      const registration = {
        workerId: r.workerId,
        supportedTasks: r.supportedTasks,
        maxConcurrency: r.maxConcurrency,
        language: languageJson(r.language),
        tags: r.tags,
        ...(Object.keys(byType).length === 0 ? {} : { maxConcurrencyByType: byType }),
      };
      return json({ type: message.type, registration });
    }
    case "Heartbeat": {
      const p = message.payload;
      const payload = {
        workerId: p.workerId,
        activeTasks: p.activeTasks,
        capacity: p.capacity,
        uptimeSeconds: p.uptimeSeconds,
      };
      return json({ type: message.type, payload });
    }
    case "TaskResult":
      return `{"type":"TaskResult","result":${resultText(message.result)}}`;
    case "Backpressure": {
      // By hand: currentLoad is a float and always has a fraction (1.0, not 1).
      const s = message.signal;
      return (
        `{"type":"Backpressure","signal":{"workerId":${json(s.workerId)},` +
        `"currentLoad":${formatFloat(s.currentLoad)},"shouldThrottle":${json(s.shouldThrottle)}` +
        `${s.draining === true ? ',"draining":true' : ""}}}`
      );
    }
  }
}

function json(value: unknown): string {
  return JSON.stringify(value);
}

/** JSON.stringify leaves out the members that are `undefined`: the metadata's extensions when not set. */
function taskJson(task: Task): object {
  const m = task.metadata;
  return {
    id: task.id,
    taskType: task.taskType,
    payload: task.payload ?? null,
    metadata: {
      createdAt: m.createdAt,
      timeoutMs: m.timeoutMs,
      priority: m.priority,
      retryCount: m.retryCount,
      maxRetries: m.maxRetries,
      traceId: m.traceId,
      idempotencyKey: m.idempotencyKey,
      attempt: m.attempt,
      epoch: m.epoch,
    },
  };
}

/** Partly by hand: a progress fraction is a float, written with a fraction as `currentLoad` is. */
function resultText(result: TaskResult): string {
  const e = result.error;
  const fields = json({
    taskId: result.taskId,
    status: result.status,
    payload: result.payload ?? null,
    error: e === null ? null : { code: e.code, message: e.message, retryable: e.retryable },
    durationMs: result.durationMs,
    workerId: result.workerId,
  }).slice(0, -1);
  const { progress, extendMs } = result;
  const progressText =
    progress === undefined
      ? ""
      : `,"progress":{"fraction":${progress.fraction === null ? "null" : formatFloat(progress.fraction)},` +
        `"message":${json(progress.message ?? null)}}`;
  return `${fields}${progressText}${extendMs === undefined ? "" : `,"extendMs":${json(extendMs)}`}}`;
}

/** The shortest text that reads back as `value`, always with a fraction or exponent. */
function formatFloat(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`not a finite number: ${value}`);
  const text = String(value);
  return /[.e]/.test(text) ? text : `${text}.0`;
}
