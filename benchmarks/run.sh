#!/usr/bin/env bash
# Starts a fresh usher (its own database and namespace) and runs usher-bench
# against it. Usage: benchmarks/run.sh serve|split [usher-bench flags…]
#   serve: one `usher serve` process (the topology BUDGETS.md's floors are for)
#   split: `usher gateway` + two `usher node` + bridge + mailer over the local
#          NATS server (reported, without floors)
set -euo pipefail
cd "$(dirname "$0")/.."
topology=${1:?usage: benchmarks/run.sh serve|split [usher-bench flags]}
shift

bash .ci/services >/dev/null
make -s build
go build -o bin/usher-bench ./benchmarks/cmd/usher-bench

suffix=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
# One fixed namespace: its RabbitMQ exchanges are declared again,
# not piled up run after run.
export USHER_NAMESPACE=bench
export USHER_DATABASE_URL="postgres://postgres@127.0.0.1:5432/usher_bench_$suffix?sslmode=disable"
export USHER_DATA_DIR=$(mktemp -d)
export USHER_SECRET_KEY=$(head -c 32 /dev/urandom | base64)
export USHER_EVENT_KEY=$(head -c 32 /dev/urandom | base64)
# Mail from the email scenarios goes to usher-bench's own SMTP sink: the
# budget's machine has no SMTP server on it (see BENCHMARKS.md).
sink=127.0.0.1:2526
export USHER_SMTP_URL="smtp://$sink?starttls=none"
export USHER_RATE_LIMITS=off USHER_LOG_LEVEL=warn USHER_AUTO_MIGRATE=true USHER_PPROF=${USHER_PPROF:-false}
psql -q 'postgres://postgres@127.0.0.1:5432/postgres' -c "CREATE DATABASE usher_bench_$suffix"

# Mail still queued when an earlier run stopped is sealed with that run's
# event key: this run's mailer could only dead-letter it, on the cores being
# measured. The namespace's queues go before and after each run; usher
# declares them again at start.
drop_queues() {
  rabbitmqctl -q list_queues --no-table-headers name 2>/dev/null |
    grep "^$USHER_NAMESPACE\." | xargs -r -n 1 -P 8 rabbitmqctl -q delete_queue >/dev/null 2>&1 || true
}
drop_queues

pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # 2 and above: the run could not be done. The logs say why, and they go
  # with the data directory below.
  if [ "$status" -ge 2 ]; then
    for log in "$USHER_DATA_DIR"/*.log; do
      [ -f "$log" ] || continue
      echo "--- last lines of $(basename "$log")" >&2
      tail -n 40 "$log" >&2
    done
  fi
  psql -q 'postgres://postgres@127.0.0.1:5432/postgres' -c "DROP DATABASE IF EXISTS usher_bench_$suffix WITH (FORCE)" || true
  drop_queues
  redis-cli --scan --pattern "$USHER_NAMESPACE:*" | xargs -r redis-cli del >/dev/null || true
  rm -rf "$USHER_DATA_DIR"
}
trap cleanup EXIT

start() { # role admin-port [args]
  local role=$1 port=$2
  shift 2
  USHER_ADMIN_ADDR=127.0.0.1:$port bin/usher "$role" "$@" >>"$USHER_DATA_DIR/$role.log" 2>&1 &
  pids+=($!)
}

admins=127.0.0.1:9090
case "$topology" in
serve)
  start serve 9090
  ;;
split)
  export USHER_NATS_URL=nats://127.0.0.1:4222
  bin/usher migrate up >/dev/null
  start node 9091
  USHER_HTTP_ADDR=127.0.0.1:18081 start node 9092
  start bridge 9093
  start mailer 9094
  start gateway 9090
  admins=127.0.0.1:9090,127.0.0.1:9091,127.0.0.1:9092
  ;;
*)
  echo "unknown topology $topology" >&2
  exit 2
  ;;
esac

for _ in $(seq 1 120); do
  curl -sf http://127.0.0.1:8080/readyz >/dev/null && break
  sleep 0.5
done
curl -sf http://127.0.0.1:8080/readyz >/dev/null || { echo "usher did not become ready" >&2; exit 2; }

bin/usher-bench --base http://127.0.0.1:8080 --admin "$admins" --usher bin/usher --smtp-sink "$sink" --out . "$@"
