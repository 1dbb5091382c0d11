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
cargo test --locked --all-targets 2>&1 | tee target/test-output.txt
# Summarise (cargo prints one result line per test binary).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "cargo tests: %d passed, %d failed\n", p, f }' target/test-output.txt

echo "== openapi-spec-validator (OpenAPI 3.1 and Swagger 2.0 documents)"
./scripts/validate-spec.sh
