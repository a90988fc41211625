#!/usr/bin/env bash
# Make sure the local PostgreSQL the tests use is answering; start it if it is installed but stopped.
set -u
HOST=${PGHOST_TEST:-127.0.0.1}
PORT=${PGPORT_TEST:-5432}
answering() { pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null || (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }
if answering; then exit 0; fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  echo "PostgreSQL is not answering on $HOST:$PORT; starting it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do answering && exit 0; sleep 1; done
fi
echo "error: no PostgreSQL answers at $HOST:$PORT; the suite runs every storage test on PostgreSQL too." >&2
echo "Start one (trust auth, database 'test'), or set SHAREDCARE_TEST_SKIP_POSTGRES=1 by hand to skip it." >&2
exit 1
