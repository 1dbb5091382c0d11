#!/usr/bin/env bash
# Independent check of the committed documents with openapi-spec-validator (PyPI):
# the OpenAPI 3.1 document and the Swagger 2.0 connector definition. Exits non-zero on any error.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/python-tools.sh
for doc in openapi/openapi.json connector-definition/apiDefinition.swagger.json; do
    echo "-- openapi-spec-validator $doc"
    .venv/bin/openapi-spec-validator "$doc"
done
