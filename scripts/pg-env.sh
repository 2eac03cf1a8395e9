# Sourced by scripts/test and scripts/demo: makes sure a PostgreSQL server
# answers and exports DATABASE_URL (an admin URL: tests create databases).
#
# Order: $DATABASE_URL if it answers; else 127.0.0.1:5432 (user postgres);
# else a private cluster under .tmp/pg on port 54329, created with the
# distribution's PostgreSQL binaries (installed with apt-get if missing).

pg_answers() { psql "$1" -Atqc 'select 1' >/dev/null 2>&1; }

ensure_psql() {
  command -v psql >/dev/null 2>&1 && return 0
  echo "scripts: installing the PostgreSQL client" >&2
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client) >&2
  fi
  command -v psql >/dev/null 2>&1 || { echo "scripts: psql not found and could not be installed" >&2; return 1; }
}

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start_private_cluster() {
  local root; root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local dir="$root/.tmp/pg" port=54329 bindir
  bindir="$(pg_bindir)"
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "scripts: installing PostgreSQL server binaries" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2 || return 1
    bindir="$(pg_bindir)"
  fi
  local run_as=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    run_as=(runuser -u postgres --)
  fi
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown -R postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    "${run_as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null || return 1
  fi
  if ! pg_answers "postgres://postgres@127.0.0.1:$port/postgres"; then
    echo "scripts: starting a private PostgreSQL on 127.0.0.1:$port ($dir)" >&2
    "${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null || return 1
  fi
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

ensure_postgres() {
  ensure_psql || return 1
  if [ -n "${DATABASE_URL:-}" ] && pg_answers "$DATABASE_URL"; then
    return 0
  fi
  if pg_answers "postgres://postgres@127.0.0.1:5432/postgres"; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    return 0
  fi
  if [ -n "${DATABASE_URL:-}" ]; then
    echo "scripts: DATABASE_URL does not answer; falling back" >&2
  fi
  start_private_cluster || { echo "scripts: could not find or start PostgreSQL" >&2; return 1; }
  pg_answers "$DATABASE_URL" || { echo "scripts: PostgreSQL did not come up at $DATABASE_URL" >&2; return 1; }
}
