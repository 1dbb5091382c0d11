#!/usr/bin/env bash
# Runs a command with a throw-away PostgreSQL cluster: installs Debian's postgresql when it is
# missing, starts a cluster in a temporary directory (pg_virtualenv; as root too, no sudo, no
# Docker), exports CONNECTOR_TEST_POSTGRES_URL for the command, and removes the cluster when the
# command ends, whatever its outcome.
#
#   scripts/with-postgres.sh cargo test --test it
set -euo pipefail

if ! command -v pg_virtualenv >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    echo "== installing PostgreSQL (Debian package postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi

# pg_virtualenv exports PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE for its command; -t keeps
# the cluster in a temporary directory even as root.
exec pg_virtualenv -t -o "max_connections=400" -o "fsync=off" -- \
    bash -c 'export CONNECTOR_TEST_POSTGRES_URL="postgres://${PGUSER}:${PGPASSWORD}@127.0.0.1:${PGPORT}/${PGDATABASE}"; exec "$@"' \
    with-postgres "$@"
