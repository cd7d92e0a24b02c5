/**
 * A checker for the subset of JSON Schema that spec/schema/messages.schema.json
 * uses, plus the one rule a schema cannot state: members in the order of
 * `properties`. Returns the problems found, each with its path.
 */

import { readFileSync } from "node:fs";

import { SPEC_DIR } from "./paths.js";

interface Schema {
  readonly type?: string | readonly string[];
  readonly properties?: Record<string, Schema>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | Schema;
  readonly items?: Schema;
  readonly const?: unknown;
  readonly enum?: readonly unknown[];
  readonly pattern?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly $ref?: string;
  readonly anyOf?: readonly Schema[];
  readonly oneOf?: readonly Schema[];
}

const shared = JSON.parse(readFileSync(`${SPEC_DIR}/schema/messages.schema.json`, "utf8")) as Schema & {
  readonly $defs: Record<string, Schema>;
};

/**
 * The optional fields that the protocol's additions give four types ("workers in
 * production", and the durability fields of a task's metadata), as this SDK writes
 * them: each only when it holds something, after the fields of rust-pipe v0.1, never
 * required. They are checked from here for as long as the shared schema does not
 * list them; a field the shared schema has wins.
 */
const EXTENSIONS: Readonly<Record<string, Readonly<Record<string, Schema>>>> = {
  BackpressureSignal: { draining: { const: true } },
  TaskMetadata: {
    idempotencyKey: { type: "string" },
    attempt: { type: "integer", minimum: 1 },
    epoch: { type: "integer", minimum: 0 },
  },
  TaskResult: {
    progress: {
      type: "object",
      properties: {
        fraction: { anyOf: [{ type: "number", minimum: 0, maximum: 1 }, { type: "null" }] },
        message: { type: ["string", "null"] },
      },
      required: ["fraction", "message"],
      additionalProperties: false,
    },
    extendMs: { type: "integer", minimum: 1 },
  },
  WorkerRegistration: {
    maxConcurrencyByType: { type: "object", additionalProperties: { type: "integer", minimum: 1 } },
  },
};

const root = {
  $defs: Object.fromEntries(
    Object.entries(shared.$defs).map(([name, definition]) => {
      const extension = EXTENSIONS[name];
      if (extension === undefined) return [name, definition];
      // The shared fields keep their order and their schemas; the others follow them.
      const properties = { ...definition.properties, ...extension, ...definition.properties };
      return [name, { ...definition, properties }];
    }),
  ),
};

/** Problems of `message` against the definition of its `type`; empty when it conforms. */
export function messageProblems(message: { readonly type: string }): string[] {
  return schemaProblems(message, message.type === "TaskResult" ? "TaskResultMessage" : message.type);
}

/** Problems of `value` against `$defs/<definition>`; empty when it conforms. */
export function schemaProblems(value: unknown, definition: string): string[] {
  return check(value, { $ref: `#/$defs/${definition}` }, "$");
}

function check(value: unknown, schema: Schema, path: string): string[] {
  if (schema.$ref !== undefined) {
    const target = root.$defs[schema.$ref.replace("#/$defs/", "")];
    if (target === undefined) return [`${path}: unknown $ref ${schema.$ref}`];
    return check(value, target, path);
  }
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives !== undefined) {
    const passing = alternatives.filter((alternative) => check(value, alternative, path).length === 0).length;
    const conforms = schema.oneOf ? passing === 1 : passing >= 1;
    return conforms ? [] : [`${path}: matches ${passing} of its alternatives`];
  }
  const problems: string[] = [];
  const types = schema.type === undefined ? undefined : [schema.type].flat();
  if (types !== undefined && !types.some((type) => hasType(value, type))) {
    return [`${path}: expected ${types.join(" or ")}`];
  }
  if ("const" in schema && value !== schema.const) problems.push(`${path}: expected ${String(schema.const)}`);
  if (schema.enum !== undefined && !schema.enum.includes(value)) problems.push(`${path}: not in the enum`);
  if (schema.pattern !== undefined && !new RegExp(schema.pattern, "u").test(value as string)) {
    problems.push(`${path}: does not match ${schema.pattern}`);
  }
  if (schema.minimum !== undefined && (value as number) < schema.minimum) problems.push(`${path}: below the minimum`);
  if (schema.maximum !== undefined && (value as number) > schema.maximum) problems.push(`${path}: above the maximum`);
  if (schema.items !== undefined) {
    (value as unknown[]).forEach((item, i) => problems.push(...check(item, schema.items as Schema, `${path}[${i}]`)));
  }
  if (schema.properties !== undefined || typeof schema.additionalProperties === "object") {
    problems.push(...checkObject(value as Record<string, unknown>, schema, path));
  }
  return problems;
}

function checkObject(value: Record<string, unknown>, schema: Schema, path: string): string[] {
  const properties = schema.properties ?? {};
  const problems = (schema.required ?? [])
    .filter((name) => !Object.hasOwn(value, name))
    .map((name) => `${path}.${name}: missing`);
  for (const [name, member] of Object.entries(value)) {
    const property = properties[name];
    const additional = schema.additionalProperties;
    if (property !== undefined) problems.push(...check(member, property, `${path}.${name}`));
    else if (additional === false) problems.push(`${path}.${name}: not allowed`);
    else if (typeof additional === "object") problems.push(...check(member, additional, `${path}.${name}`));
  }
  const order = Object.keys(properties).filter((name) => Object.hasOwn(value, name));
  if (schema.properties !== undefined && Object.keys(value).join() !== order.join()) {
    problems.push(`${path}: members not in the order ${order.join(", ")}`);
  }
  return problems;
}

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case "object":
      return typeof value === "object" && value !== null && !Array.isArray(value);
    case "array":
      return Array.isArray(value);
    case "integer":
      return Number.isInteger(value);
    case "null":
      return value === null;
    default:
      return typeof value === type;
  }
}
