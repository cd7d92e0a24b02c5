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
  readonly additionalProperties?: boolean;
  readonly items?: Schema;
  readonly const?: unknown;
  readonly enum?: readonly unknown[];
  readonly pattern?: string;
  readonly minimum?: number;
  readonly $ref?: string;
  readonly anyOf?: readonly Schema[];
  readonly oneOf?: readonly Schema[];
}

const root = JSON.parse(readFileSync(`${SPEC_DIR}/schema/messages.schema.json`, "utf8")) as Schema & {
  readonly $defs: Record<string, Schema>;
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
  if (schema.items !== undefined) {
    (value as unknown[]).forEach((item, i) => problems.push(...check(item, schema.items as Schema, `${path}[${i}]`)));
  }
  if (schema.properties !== undefined) problems.push(...checkObject(value as Record<string, unknown>, schema, path));
  return problems;
}

function checkObject(value: Record<string, unknown>, schema: Schema, path: string): string[] {
  const properties = schema.properties ?? {};
  const problems = (schema.required ?? [])
    .filter((name) => !Object.hasOwn(value, name))
    .map((name) => `${path}.${name}: missing`);
  for (const [name, member] of Object.entries(value)) {
    const property = properties[name];
    if (property !== undefined) problems.push(...check(member, property, `${path}.${name}`));
    else if (schema.additionalProperties === false) problems.push(`${path}.${name}: not allowed`);
  }
  const order = Object.keys(properties).filter((name) => Object.hasOwn(value, name));
  if (Object.keys(value).join() !== order.join()) {
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
