#!/usr/bin/env bash
# Regenerates registry/.sqlx, the sqlx offline query data committed so builds need no database. Run it after changing
# a query or a migration: it starts a throwaway Postgres, applies migrations/, and builds the registry with the query
# macros online, which writes one JSON file per query.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${RAMPART_PG_BIN:-}
if [[ -z $bin ]]; then
    if command -v pg_config >/dev/null && [[ -x $(pg_config --bindir)/initdb ]]; then
        bin=$(pg_config --bindir)
    else
        bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    fi
fi
[[ -x $bin/initdb ]] || { echo "PostgreSQL server binaries not found; set RAMPART_PG_BIN" >&2; exit 2; }

dir=$(mktemp -d -t rampart-sqlx-XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg=()
if [[ $(id -u) == 0 ]]; then
    chown -R postgres "$dir"
    as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi
cleanup() {
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

"${as_pg[@]}" "$bin/initdb" --auth=trust --username=postgres --encoding=UTF8 --no-sync -D "$dir/data" >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
url="postgres://postgres@127.0.0.1:$port/postgres"
for migration in "$root"/migrations/*.sql; do
    "$bin/psql" -X -q -v ON_ERROR_STOP=1 -d "$url" -f "$migration"
done

rm -rf "$root/registry/.sqlx"
mkdir -p "$root/registry/.sqlx"
# Touch the sources so cargo re-runs the query macros.
find "$root/registry/src" -name '*.rs' -exec touch {} +
cd "$root"
SQLX_OFFLINE=false DATABASE_URL=$url SQLX_OFFLINE_DIR=$root/registry/.sqlx \
    cargo check -p rampart-registry --lib --quiet
echo "wrote $(ls "$root/registry/.sqlx" | wc -l) query files to registry/.sqlx"
