#!/bin/sh
# Proves the image runs: its three commands as containers (read-only, user 10001, production
# settings) on this machine's PostgreSQL (a throw-away database) and Redis, each waited for on
# its health endpoint, then one patient message through the gateway, answered by Rasa and the
# actions into the Twilio simulator (run from .venv on this machine, as Twilio's stand-in).
# Usage: docker/smoke_test.sh [image]   (after `make image`). Prints what it saw; exits 1 on a
# failure. Host networking, so every address is 127.0.0.1 and nothing is published.
set -eu
cd "$(dirname "$0")/.."
IMAGE=${1:-ringback:latest}
run=$(mktemp -d /tmp/ringback-smoke.XXXXXX)
chmod 755 "$run"
database="ringback_smoke_$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
gateway_port=$(free_port); rasa_port=$(free_port); actions_port=$(free_port); fake_port=$(free_port)
secret() { .venv/bin/python -c 'import secrets; print(secrets.token_hex(32))'; }
containers=""
cleanup() {
    for container in $containers; do docker rm -f "$container" >/dev/null 2>&1 || true; done
    [ -n "${fake_pid:-}" ] && kill "$fake_pid" 2>/dev/null || true
    psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" || true
    rm -rf "$run"
}
trap cleanup EXIT

psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE \"$database\""
# Production refuses plaintext staff passwords: the example clinics with hashed ones.
.venv/bin/python - "$run/clinics.yml" <<'PY'
import sys
import yaml
from argon2 import PasswordHasher
document = yaml.safe_load(open("clinics/example.yml"))
for clinic in document["clinics"]:
    for staff in clinic.get("staff", []):
        if "password" in staff:
            staff["password_hash"] = PasswordHasher().hash(staff.pop("password"))
open(sys.argv[1], "w").write(yaml.safe_dump(document))
PY
chmod 644 "$run/clinics.yml"
cat > "$run/env" <<ENV
ENVIRONMENT=production
DATABASE_URL=postgresql+psycopg2://postgres@127.0.0.1:5432/$database
REDIS_URL=redis://127.0.0.1:6379/7
CLINICS_FILE=/config/clinics.yml
TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000
TWILIO_AUTH_TOKEN=$(secret)
TWILIO_API_BASE_URL=http://127.0.0.1:$fake_port
GATEWAY_PUBLIC_URL=http://127.0.0.1:$gateway_port
CONSOLE_PUBLIC_URL=http://127.0.0.1:$gateway_port
GATEWAY_PORT=$gateway_port
RASA_PORT=$rasa_port
RASA_URL=http://127.0.0.1:$rasa_port
ACTION_SERVER_PORT=$actions_port
ACTION_SERVER_URL=http://127.0.0.1:$actions_port/webhook
RASA_TOKEN=$(secret)
ACTION_SERVER_TOKEN=$(secret)
SESSION_SECRET=$(secret)
FIELD_ENCRYPTION_KEYS=k1:$(.venv/bin/ringback new-field-key)
ENV

in_image() {  # the image's way: read-only, no capabilities, its own user
    docker run --network host --read-only --tmpfs /tmp --cap-drop ALL \
        --security-opt no-new-privileges --env-file "$run/env" \
        --volume "$run/clinics.yml:/config/clinics.yml:ro" "$@"
}
in_image --rm "$IMAGE" migrate
in_image --rm "$IMAGE" load-clinics
echo "whoami in the image: $(docker run --rm --entrypoint id "$IMAGE")"

# The simulator signs its webhooks with the deployment's Twilio token, sends to its gateway.
(set -a; . "$run/env"; set +a; CLINICS_FILE="$run/clinics.yml"
 exec .venv/bin/ringback simulator --port "$fake_port") > "$run/simulator.log" 2>&1 &
fake_pid=$!
for process in actions rasa gateway; do
    containers="$containers ringback-smoke-$process-$$"
    in_image --detach --name "ringback-smoke-$process-$$" "$IMAGE" serve "$process" >/dev/null
done

wait_healthy() {  # name url seconds
    deadline=$(( $(date +%s) + $3 ))
    until curl -fsS "$2" > "$run/answer" 2>/dev/null; do
        if [ "$(date +%s)" -gt "$deadline" ]; then
            echo "FAIL: $1 not healthy at $2"; docker logs --tail 30 "ringback-smoke-$1-$$"; exit 1
        fi
        sleep 2
    done
    echo "$1 healthy: GET $2 -> $(cat "$run/answer")"
}
wait_healthy actions "http://127.0.0.1:$actions_port/health" 180
wait_healthy rasa "http://127.0.0.1:$rasa_port/webhooks/ringback/" 300
wait_healthy gateway "http://127.0.0.1:$gateway_port/health" 120

# A patient texts the clinic (the simulator signs it as Twilio would) and gets an answer.
.venv/bin/python - "$fake_port" <<'PY'
import sys
from simulator.client import SimulatedPhone
phone = SimulatedPhone(f"http://127.0.0.1:{sys.argv[1]}")
reply = phone.reply_and_wait(sender="+447700900321", clinic_number="+441632960001",
                             body="what time do you open?", timeout=120)
print(f"patient message answered through gateway -> Rasa -> actions: {reply!r}")
PY
docker ps --filter "name=ringback-smoke-" --format '{{.Names}}: {{.Status}}'

# Without its tracker store a Rasa container exits, instead of keeping conversations in memory.
sed 's#^DATABASE_URL=.*#DATABASE_URL=postgresql+psycopg2://postgres@127.0.0.1:1/nowhere#' \
    "$run/env" > "$run/env.nodb"
echo "TRACKER_STORE_START_TIMEOUT_SECONDS=3" >> "$run/env.nodb"
if docker run --rm --network host --read-only --tmpfs /tmp --env-file "$run/env.nodb" \
        --env "RASA_PORT=$(free_port)" "$IMAGE" serve rasa > "$run/nodb.log" 2>&1; then
    echo "FAIL: Rasa started without its tracker store"; exit 1
fi
grep -q "did not answer within 3 s" "$run/nodb.log" || {
    echo "FAIL: Rasa stopped without saying why"; tail -20 "$run/nodb.log"; exit 1; }
echo "rasa without its tracker store exits: $(grep -m1 'TrackerStoreUnavailable:' "$run/nodb.log")"
echo "smoke test passed"
