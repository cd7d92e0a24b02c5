/** The codec against the shared vectors in spec/vectors/, read in place. */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { decode, encode, ProtocolError } from "trio-pipe-worker";
import type { Message, TaskDispatch } from "trio-pipe-worker";
import { SPEC_DIR } from "./paths.js";
import { messageProblems } from "./schema.js";

interface Valid {
  readonly name: string;
  readonly message: string;
  readonly decoded: unknown;
}
interface Lenient {
  readonly name: string;
  readonly input: string;
  readonly canonical: string;
}
interface Invalid {
  readonly name: string;
  readonly class: string;
  readonly input: string;
  readonly reason_contains: string;
}

function vectors<T>(file: string): T[] {
  return JSON.parse(readFileSync(`${SPEC_DIR}/vectors/${file}.json`, "utf8")) as T[];
}

/**
 * Invalid vectors this codec accepts, because JSON.parse gives it no way to tell
 * them from valid ones. The test fails if one of them starts being rejected, or
 * disappears from the vectors, so that this list stays true.
 */
const ACCEPTED_INVALID: Readonly<Record<string, string>> = {
  "integer with a fraction": "JSON.parse reads 3.0 as the number 3, an integer",
  "integer with an exponent": "JSON.parse reads 1e3 as the number 1000, an integer",
  "maxConcurrencyByType limit with a fraction": "JSON.parse reads 2.0 as the number 2, an integer",
};

/**
 * The message a vector's JSON value decodes to: the same, but for a registration's
 * `language`, whose object form `{"Other": name}` is read as the name.
 */
function asDecoded(value: unknown): unknown {
  const message = value as { type?: string; registration?: { language?: unknown } };
  const language = message.registration?.language;
  if (message.type !== "WorkerRegister" || typeof language !== "object" || language === null) return value;
  const [name] = Object.values(language);
  return { ...message, registration: { ...message.registration, language: name } };
}

describe("valid vectors: decode, then encode to the same text", () => {
  for (const vector of vectors<Valid>("valid")) {
    test(vector.name, () => {
      const message = decode(vector.message);
      assert.deepEqual(message, asDecoded(vector.decoded));
      const encoded = encode(message);
      assert.deepEqual(JSON.parse(encoded), vector.decoded);
      assert.equal(encoded, vector.message);
      assert.deepEqual(messageProblems(JSON.parse(encoded) as Message), []);
    });
  }
});

describe("lenient vectors: decode, then encode to the canonical text", () => {
  for (const vector of vectors<Lenient>("lenient")) {
    test(vector.name, () => {
      const encoded = encode(decode(vector.input));
      assert.deepEqual(JSON.parse(encoded), JSON.parse(vector.canonical));
      assert.equal(encoded, vector.canonical);
    });
  }
});

describe("invalid vectors: rejected as the vector's class of error", () => {
  const all = vectors<Invalid>("invalid");
  for (const vector of all) {
    const acceptedBecause = ACCEPTED_INVALID[vector.name];
    if (acceptedBecause === undefined) {
      test(vector.name, () => {
        assert.throws(
          () => decode(vector.input),
          (error) => error instanceof ProtocolError && error.kind === vector.class,
          `expected a ProtocolError of kind '${vector.class}' (${vector.reason_contains})`,
        );
      });
    } else {
      test(`${vector.name} (accepted: ${acceptedBecause})`, () => {
        assert.doesNotThrow(() => decode(vector.input), "now rejected: remove it from ACCEPTED_INVALID");
      });
    }
  }
  test("every vector in ACCEPTED_INVALID exists", () => {
    const names = new Set(all.map((vector) => vector.name));
    assert.deepEqual(Object.keys(ACCEPTED_INVALID).filter((name) => !names.has(name)), []);
  });
  test("a reason names the path of the bad value", () => {
    assert.throws(
      () => decode('{"type":"TaskResult","result":{"taskId":"3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f","status":"done"}}'),
      { message: "unknown task status 'done' @ $.result.status" },
    );
  });
});

describe("values the vectors leave out", () => {
  const TASK_ID = "3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f";

  test("a missing createdAt is the time of decoding, in canonical form", () => {
    const before = Date.now();
    const message = decode(JSON.stringify({ type: "TaskDispatch", task: { id: TASK_ID, taskType: "x" } }));
    assert.equal(message.type, "TaskDispatch");
    const { createdAt } = message.task.metadata;
    assert.match(createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$/);
    assert.ok(Date.parse(createdAt) >= Math.floor(before / 1000) * 1000);
  });

  test("a timestamp pushed past year 9999 by its offset is rejected", () => {
    const frame = (createdAt: string): string =>
      JSON.stringify({ type: "TaskDispatch", task: { id: TASK_ID, taskType: "x", metadata: { createdAt } } });
    assert.throws(() => decode(frame("9999-12-31T23:00:00-02:00")), { kind: "bad timestamp" });
    assert.throws(() => decode(frame("2024-02-30T00:00:00Z")), { kind: "bad timestamp" });
    assert.doesNotThrow(() => decode(frame("2024-02-29T00:00:00Z")));
  });

  test("currentLoad is written with a fraction; a non-finite one is refused", () => {
    const signal = (currentLoad: number) =>
      ({ type: "Backpressure", signal: { workerId: "w", currentLoad, shouldThrottle: false } }) as const;
    const expected = '{"type":"Backpressure","signal":{"workerId":"w","currentLoad":2.0,"shouldThrottle":false}}';
    assert.equal(encode(signal(2)), expected);
    assert.throws(() => encode(signal(NaN)), RangeError);
  });

  test("members are written in the protocol's order, whatever the object's", () => {
    const kill = { reason: "r", taskId: TASK_ID, type: "Kill" } as const;
    assert.equal(encode(kill), `{"type":"Kill","taskId":"${TASK_ID}","reason":"r"}`);
  });
});

describe("the optional extension fields: written only when they hold something", () => {
  const TASK_ID = "3b0f6c1e-5d2a-4e8b-9c47-1a2b3c4d5e6f";
  const RESULT =
    `"taskId":"${TASK_ID}","status":"Running","payload":null,"error":null,` + `"durationMs":1200,"workerId":"w1"`;
  const METADATA =
    '"createdAt":"2025-03-14T09:26:53Z","timeoutMs":300000,"priority":"Normal","retryCount":2,"maxRetries":3,' +
    '"traceId":null';
  /** decode, then encode: the canonical text of `frame`. */
  const canonical = (frame: string): string => encode(decode(frame));

  test("Backpressure: draining only when true", () => {
    const signal = '"workerId":"w1","currentLoad":0.5,"shouldThrottle":true';
    const draining = `{"type":"Backpressure","signal":{${signal},"draining":true}}`;
    assert.equal(canonical(draining), draining);
    assert.deepEqual(decode(draining), JSON.parse(draining));
    const notDraining = `{"type":"Backpressure","signal":{${signal}}}`;
    assert.equal(canonical(`{"type":"Backpressure","signal":{${signal},"draining":false}}`), notDraining);
    const { signal: decoded } = decode(notDraining) as { signal: object };
    assert.deepEqual(Object.keys(decoded), ["workerId", "currentLoad", "shouldThrottle"]);
  });

  test("a Running result: progress and extendMs after the v0.1 fields, a fraction always with a fraction part", () => {
    const extensions = '"progress":{"fraction":0.4,"message":"stage 2"},"extendMs":30000';
    const both = `{"type":"TaskResult","result":{${RESULT},${extensions}}}`;
    assert.equal(canonical(both), both);
    assert.deepEqual(decode(both), JSON.parse(both));
    const whole = `{"type":"TaskResult","result":{${RESULT},"progress":{"fraction":1,"message":null}}}`;
    assert.equal(canonical(whole), whole.replace('"fraction":1', '"fraction":1.0'));
    const unknown = `{"type":"TaskResult","result":{${RESULT},"progress":{}}}`;
    assert.equal(canonical(unknown), unknown.replace("{}", '{"fraction":null,"message":null}'));
    const neither = `{"type":"TaskResult","result":{${RESULT}}}`;
    assert.equal(canonical(`{"type":"TaskResult","result":{${RESULT},"progress":null,"extendMs":null}}`), neither);
  });

  test("a terminal result never carries them: ignored on input", () => {
    const completed = RESULT.replace("Running", "Completed");
    const extensions = '"progress":{"fraction":0.4,"message":"x"},"extendMs":5';
    const frame = `{"type":"TaskResult","result":{${completed},${extensions}}}`;
    assert.equal(canonical(frame), `{"type":"TaskResult","result":{${completed}}}`);
  });

  test("WorkerRegister: maxConcurrencyByType only when not empty", () => {
    const registration =
      '"workerId":"w1","supportedTasks":["render","fetch"],"maxConcurrency":52,' + '"language":"Go","tags":[]';
    const limited = `{"type":"WorkerRegister","registration":{${registration},"maxConcurrencyByType":{"render":2}}}`;
    assert.equal(canonical(limited), limited);
    assert.deepEqual(decode(limited), JSON.parse(limited));
    const plain = `{"type":"WorkerRegister","registration":{${registration}}}`;
    for (const empty of ["{}", "null"]) {
      const frame = `{"type":"WorkerRegister","registration":{${registration},"maxConcurrencyByType":${empty}}}`;
      assert.equal(canonical(frame), plain);
    }
  });

  test("a task's metadata: idempotencyKey, attempt and epoch after traceId, each only when set", () => {
    const head = `"id":"${TASK_ID}","taskType":"charge","payload":null`;
    const frame = (extra: string): string => `{"type":"TaskDispatch","task":{${head},"metadata":{${METADATA}${extra}}}}`;
    const all = frame(',"idempotencyKey":"order-42","attempt":3,"epoch":0');
    assert.equal(canonical(all), all);
    assert.deepEqual(decode(all), JSON.parse(all));
    assert.deepEqual(messageProblems(JSON.parse(all) as Message), []);
    for (const one of [',"idempotencyKey":""', ',"attempt":1', ',"epoch":7']) {
      assert.equal(canonical(frame(one)), frame(one));
    }
    assert.equal(canonical(frame(',"idempotencyKey":null,"attempt":null,"epoch":null')), frame(""));
    const { task } = decode(frame(',"attempt":null')) as TaskDispatch;
    assert.deepEqual(Object.keys(task.metadata), [
      "createdAt",
      "timeoutMs",
      "priority",
      "retryCount",
      "maxRetries",
      "traceId",
    ]);
    const reordered: TaskDispatch = {
      type: "TaskDispatch",
      task: { ...task, metadata: { epoch: 0, attempt: 3, idempotencyKey: "order-42", ...task.metadata } },
    };
    assert.equal(encode(reordered), all);
  });

  test("values out of their range are rejected, naming the path", () => {
    const result = (extra: string): string => `{"type":"TaskResult","result":{${RESULT},${extra}}}`;
    const metadata = (extra: string): string =>
      `{"type":"TaskDispatch","task":{"id":"${TASK_ID}","taskType":"x","metadata":{${extra}}}}`;
    const cases: Array<[string, string, string]> = [
      [metadata('"attempt":0'), "out of range", "@ $.task.metadata.attempt"],
      [metadata('"attempt":"3"'), "mistyped field", "@ $.task.metadata.attempt"],
      [metadata('"epoch":-1'), "out of range", "@ $.task.metadata.epoch"],
      [metadata('"epoch":0.5'), "mistyped field", "@ $.task.metadata.epoch"],
      [metadata('"idempotencyKey":42'), "mistyped field", "@ $.task.metadata.idempotencyKey"],
      [result('"progress":{"fraction":1.5}'), "out of range", "@ $.result.progress.fraction"],
      [result('"progress":{"fraction":"half"}'), "mistyped field", "@ $.result.progress.fraction"],
      [result('"progress":0.5'), "mistyped field", "@ $.result.progress"],
      [result('"extendMs":0'), "out of range", "@ $.result.extendMs"],
      [result('"extendMs":2.5'), "mistyped field", "@ $.result.extendMs"],
      [
        '{"type":"WorkerRegister","registration":{"workerId":"w1","supportedTasks":["x"],' +
          '"maxConcurrencyByType":{"x":0}}}',
        "out of range",
        "@ $.registration.maxConcurrencyByType.x",
      ],
      ['{"type":"Backpressure","signal":{"workerId":"w1","draining":"yes"}}', "mistyped field", "@ $.signal.draining"],
    ];
    for (const [frame, kind, path] of cases) {
      assert.throws(
        () => decode(frame),
        (error) => error instanceof ProtocolError && error.kind === kind && error.message.endsWith(path),
        frame,
      );
    }
  });
});
