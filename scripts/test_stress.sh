#!/usr/bin/env bash
# The whole suite (as `make test`) while every core is kept busy, so a test that only passes on
# a quiet machine fails here. Usage: scripts/test_stress.sh [MOMENT [PYTEST ARGS...]]
# MOMENT, e.g. "2026-12-05 23:30", is a time in Europe/London (the example clinics' zone): the
# clock of every process the suite starts begins there and moves on. Needs Debian's faketime,
# installed here when missing (as root, like Chromium in .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

moment="${1:-}"
shift || true
suite=(.venv/bin/python -m pytest -q -m "not fault" "$@")  # as `make test`: no slow fault cases

if [ -n "$moment" ]; then
    if ! command -v faketime >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null
    fi
    # libfaketime reads the moment in each process's own zone, so give it UTC and run in UTC.
    start=$(date -u -d "TZ=\"Europe/London\" $moment" '+%Y-%m-%d %H:%M:%S')
    echo "clock starts at $moment Europe/London ($start UTC)"
    # FAKETIME_DONT_RESET: one clock for all processes; without it each one (Rasa, uvicorn,
    # Chromium) would start again at the moment. --exclude-monotonic: Python waits for a lock,
    # Event or Condition with a deadline on the faked monotonic clock but the kernel waits on
    # the real one, so every timed wait would hang. FAKETIME_FORCE_MONOTONIC_FIX=0: with the
    # monotonic clock real, libfaketime's fix-up of every pthread_cond_timedwait is not needed,
    # and it slows Python's thread hand-offs several times over (webhooks took seconds).
    suite=(env TZ=UTC FAKETIME_DONT_RESET=1 FAKETIME_FORCE_MONOTONIC_FIX=0
           faketime --exclude-monotonic -f "@$start" "${suite[@]}")
fi

hogs=()
stop_hogs() { kill "${hogs[@]}" 2>/dev/null || true; }
trap stop_hogs EXIT
for _ in $(seq "$(nproc)"); do
    while :; do :; done &
    hogs+=("$!")
done
echo "$(nproc) busy loops (pids ${hogs[*]}) keep every core busy"

"${suite[@]}"
