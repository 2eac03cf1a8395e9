# Sourced by scripts/test (and scripts/demo --amqp): makes sure a RabbitMQ
# broker answers on 127.0.0.1:5672 (guest/guest), for the winchester-ingest
# tests. Order: already listening; else `rabbitmq-server -detached` if
# installed; else apt-get install rabbitmq-server, then start it. Waits up to
# 60 s for the port.

rabbit_answers() { (exec 3<>/dev/tcp/127.0.0.1/5672) >/dev/null 2>&1; }

ensure_rabbitmq() {
  rabbit_answers && return 0
  if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    if command -v apt-get >/dev/null 2>&1; then
      echo "scripts: installing RabbitMQ" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server) >&2 || true
    fi
  fi
  local server; server="$(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)"
  if [ ! -x "$server" ]; then
    echo "scripts: rabbitmq-server not found and could not be installed" >&2
    return 1
  fi
  echo "scripts: starting RabbitMQ on 127.0.0.1:5672" >&2
  "$server" -detached >/dev/null 2>&1 || true
  local i
  for i in $(seq 1 60); do
    rabbit_answers && return 0
    sleep 1
  done
  echo "scripts: RabbitMQ did not answer on 127.0.0.1:5672 within 60 s" >&2
  return 1
}
