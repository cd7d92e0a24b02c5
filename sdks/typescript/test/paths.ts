import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The SDK's directory (tests run from dist/test/). */
export const SDK_DIR = fileURLToPath(new URL("../../", import.meta.url));
/** The repository's spec/ directory: the shared schema and vectors, read in place. */
export const SPEC_DIR = join(dirname(dirname(SDK_DIR)), "spec");
