/** Every TypeScript example in the README and the docs page is part of a compiled example file. */

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";

import { SDK_DIR } from "./paths.js";

const PAGES = [join(SDK_DIR, "README.md"), join(SDK_DIR, "../../docs/sdk-typescript.md")];
const EXAMPLES_DIR = join(SDK_DIR, "examples");
const examples = readdirSync(EXAMPLES_DIR)
  .filter((name) => name.endsWith(".ts"))
  .map((name) => readFileSync(join(EXAMPLES_DIR, name), "utf8"));

for (const page of PAGES) {
  test(`the ts blocks of ${relative(SDK_DIR, page)} are in examples/`, () => {
    const blocks = [...readFileSync(page, "utf8").matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1] as string);
    assert.ok(blocks.length > 0);
    for (const block of blocks) {
      assert.ok(
        examples.some((source) => source.includes(block)),
        `not in any file of examples/:\n${block}`,
      );
    }
  });
}
