#!/usr/bin/env bash
# Creates .venv (gitignored) with the Python tools the checks use. Idempotent; pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."

OPENAPI_SPEC_VALIDATOR_VERSION="0.9.0"
SCHEMATHESIS_VERSION="4.32.5"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -m pip show openapi-spec-validator 2>/dev/null | grep -qx "Version: ${OPENAPI_SPEC_VALIDATOR_VERSION}"; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        "openapi-spec-validator==${OPENAPI_SPEC_VALIDATOR_VERSION}"
fi
if ! .venv/bin/python -m pip show schemathesis 2>/dev/null | grep -qx "Version: ${SCHEMATHESIS_VERSION}"; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        "schemathesis==${SCHEMATHESIS_VERSION}"
fi
