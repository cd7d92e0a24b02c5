#!/usr/bin/env bash
# From a clean checkout: install the locked dependencies, type-check and compile
# (tsc, strict), then run the unit tests (node:test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm ci --no-audit --no-fund
rm -rf dist
npx tsc -p .
node --test --test-reporter=spec dist/test/*.test.js
