#!/usr/bin/env bash
# The one test command (README): formatting, lints, every Rust test, and the spec checks.
# Anything the tests need beyond the Rust toolchain is installed by scripts/ here.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --locked --lib --bins --tests --examples 2>&1 | tee target/test-output.txt
# Summarise (cargo prints one result line per test binary).
passed=$(awk '/^test result:/ { p += $4 } END { print p + 0 }' target/test-output.txt)

echo "== cargo test --lib --test it on PostgreSQL (a throw-away cluster: the store tests of both backends, the integration suite, the replicas tests)"
./scripts/with-postgres.sh cargo test --locked --lib --test it 2>&1 | tee target/test-output-postgres.txt
passed_pg=$(awk '/^test result:/ { p += $4 } END { print p + 0 }' target/test-output-postgres.txt)

echo "== openapi-spec-validator (OpenAPI 3.1 and Swagger 2.0 documents)"
./scripts/validate-spec.sh

echo "== export --check (committed openapi/ and connector-definition/ equal the code)"
cargo run --locked --quiet -- export --check

echo "== OData conformance of GetItems (differential against an independent 4.01 evaluator, OASIS ABNF cases; loopback-only namespace)"
./scripts/odata-conformance.sh

echo "== schemathesis (both documents, all phases, loopback-only network namespace)"
./scripts/schemathesis.sh

echo "== Swagger UI in headless Chromium"
./scripts/browser-check.sh

echo "== all checks passed (cargo test results above; schemathesis and the browser check passed)"
echo "tests: ${passed} passed on SQLite, ${passed_pg} passed on PostgreSQL, 0 failed"
