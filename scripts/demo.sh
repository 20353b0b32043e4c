#!/usr/bin/env bash
# `make demo`: a throwaway MariaDB (127.0.0.1:13306, datadir .demo/mariadb) and PostgreSQL (127.0.0.1:15432,
# .demo/postgres) with a sample schema each, and dbmesh in front of them (MySQL 3307 serving `demo`, PostgreSQL
# 5433 serving `demo_pg`, admin/metrics 9797), config in .demo/conf.
#
#   scripts/demo.sh               install, start everything in the background, print what to try
#   scripts/demo.sh --foreground  the same, but dbmesh runs in the foreground (Ctrl-C stops it)
#   scripts/demo.sh stop          stop dbmesh and the demo MariaDB (`make demo-stop`)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEMO=.demo
MARIADB_PORT=${DEMO_MARIADB_PORT:-13306}
POSTGRES_PORT=${DEMO_POSTGRES_PORT:-15432}
MYSQL_PORT=${DEMO_MYSQL_PORT:-3307}
PG_PORT=${DEMO_PG_PORT:-5433}
ADMIN_PORT=${DEMO_ADMIN_PORT:-9797}
PY=.venv/bin/python
PIDFILE=$DEMO/dbmesh.pid

log() { printf '[demo] %s\n' "$*" >&2; }

stop_all() {
  if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    local pid
    pid=$(cat "$PIDFILE")
    log "stopping dbmesh (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$PIDFILE"
  if [[ -x $PY && -d $DEMO/mariadb ]]; then
    "$PY" -m tests.support.mariadb stop --datadir "$DEMO/mariadb" --port "$MARIADB_PORT"
  fi
  local pgpid=$DEMO/postgres/data/postmaster.pid
  if [[ -f $pgpid ]] && kill -0 "$(head -n1 "$pgpid")" 2>/dev/null; then
    log "stopping the demo PostgreSQL"
    kill -TERM "$(head -n1 "$pgpid")"
    for _ in $(seq 1 200); do [[ -f $pgpid ]] || break; sleep 0.1; done
  fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "${1:-}" in
  stop) stop_all; exit 0 ;;
  ""|--foreground) ;;
  *) echo "usage: $0 [--foreground|stop]" >&2; exit 2 ;;
esac

scripts/install.sh
mkdir -p "$DEMO"

if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  log "dbmesh already running (pid $(cat "$PIDFILE")); run 'make demo-stop' first to restart it"
  exit 0
fi
for port in "$MYSQL_PORT" "$ADMIN_PORT"; do
  if port_busy "$port"; then
    log "port $port is in use by another program; set DEMO_MYSQL_PORT/DEMO_ADMIN_PORT or free it"
    exit 1
  fi
done

"$PY" -m tests.support.mariadb start --datadir "$DEMO/mariadb" --port "$MARIADB_PORT" --database demo_ds_0
log "loading the sample schema into demo_ds_0"
"$PY" - "$MARIADB_PORT" <<'PYEOF'
import sys
from pathlib import Path
from tests.support import MariaDB

db = MariaDB(port=int(sys.argv[1]), managed=False)
conn = db.connect(client_flag=1 << 16)  # CLIENT_MULTI_STATEMENTS: run the file as one batch
with conn.cursor() as cur:
    cur.execute(Path("scripts/demo_schema.sql").read_text())
    while cur.nextset():
        pass
conn.close()
PYEOF

log "starting the demo PostgreSQL on 127.0.0.1:$POSTGRES_PORT (sample database demo_pg_0)"
"$PY" - "$POSTGRES_PORT" <<'PYEOF'
import sys
from pathlib import Path
from tests.support.postgres import PostgreSQL

pg = PostgreSQL.managed_in(".demo/postgres", port=int(sys.argv[1]))
if pg.pid is None:
    pg.start(detach=True)
pg.ensure_database("demo_pg_0")
pg.execute(Path("scripts/demo_schema_pg.sql").read_text(), database="demo_pg_0")
PYEOF

log "writing the dbmesh config to $DEMO/conf"
"$PY" - "$MARIADB_PORT" "$MYSQL_PORT" "$PG_PORT" "$ADMIN_PORT" "$POSTGRES_PORT" <<'PYEOF'
import sys
from tests.support import MariaDB, database_config, make_dbmesh_config
from tests.support.dbmesh_proc import pg_database_config
from tests.support.postgres import PostgreSQL

mariadb_port, mysql_port, pg_port, admin_port, postgres_port = map(int, sys.argv[1:6])
db = MariaDB(port=mariadb_port, managed=False)
pg = PostgreSQL(port=postgres_port, managed=False, password="pgpw")
make_dbmesh_config(
    ".demo/conf",
    db,
    users=[{"user": "root@%", "password": "root"}],
    include_default_database=False,
    databases={"demo": database_config("demo", db, backend_database="demo_ds_0", max_pool_size=16)},
    pg_databases={"demo_pg": pg_database_config("demo_pg", pg, backend_database="demo_pg_0", max_pool_size=16)},
    port=mysql_port,
    pg_port=pg_port,
    admin_port=admin_port,
    tls=False,
)
PYEOF

try_it() {
  cat <<MSG

dbmesh is serving the logical database 'demo' (backed by demo_ds_0 on MariaDB 127.0.0.1:$MARIADB_PORT)
and 'demo_pg' (backed by demo_pg_0 on PostgreSQL 127.0.0.1:$POSTGRES_PORT).
Try:
  mysql -h127.0.0.1 -P$MYSQL_PORT -uroot -proot demo -e 'SELECT * FROM t_order ORDER BY order_id'
  mysql -h127.0.0.1 -P$MYSQL_PORT -uroot -proot demo
  PGPASSWORD=root psql -h 127.0.0.1 -p $PG_PORT -U root demo_pg -c 'SELECT * FROM t_order ORDER BY order_id'
  curl http://127.0.0.1:$ADMIN_PORT/metrics
Logs: $DEMO/dbmesh.log    Stop: make demo-stop
MSG
}

if [[ "${1:-}" == "--foreground" ]]; then
  try_it
  exec "$PY" -m dbmesh serve --config "$DEMO/conf"
fi

log "starting dbmesh"
nohup "$PY" -m dbmesh serve --config "$DEMO/conf" </dev/null >"$DEMO/dbmesh.log" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 1 300); do
  if port_busy "$MYSQL_PORT"; then try_it; exit 0; fi
  if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    log "dbmesh exited during start-up; its log ($DEMO/dbmesh.log) ends with:"
    tail -n 30 "$DEMO/dbmesh.log" >&2
    rm -f "$PIDFILE"
    exit 1
  fi
  sleep 0.1
done
log "dbmesh did not listen on $MYSQL_PORT within 30 s; see $DEMO/dbmesh.log"
exit 1
