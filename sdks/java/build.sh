#!/usr/bin/env bash
# Builds the Java worker SDK and runs its checks and unit tests: javac with every lint
# and doclint warning as an error, then JUnit (which reads ../../spec/vectors in place).
# Leaves target/classes, target/test-classes (the examples) and target/classpath.txt,
# which conformance-worker runs. Dependencies come from Maven Central into ~/.m2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
mvn -q -B clean verify
# Maven is quiet when all is well (but for colour resets, hence the newline): one line
# with the count of the tests that ran.
echo
awk -F'"' '/<testsuite / {
    for (i = 1; i < NF; i++) {
        if ($i ~ / tests=$/) tests += $(i + 1)
        if ($i ~ / (failures|errors)=$/) failed += $(i + 1)
        if ($i ~ / skipped=$/) skipped += $(i + 1)
    }
} END { printf "java: %d passed, %d failed, %d skipped\n", tests - failed - skipped, failed, skipped }' \
    target/surefire-reports/TEST-*.xml
