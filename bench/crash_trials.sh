#!/usr/bin/env bash
# Crash trials, the long series: runs the `crash_trials` integration test (platform/tests/it/crash_trials.rs)
# with TRIALS trials (default 200; CI runs one per operation). Each kills Berth (SIGKILL) or drops the client at
# a random point of an upload, subscribe, unsubscribe, upgrade, rollback, application or tenant deletion, or an
# autoscaler's scale-up under CPU load, and checks that the API, the database, the data dir and Docker agree afterwards. Prints the seed (replay with
# BERTH_CRASH_SEED=<seed> BERTH_CRASH_ONLY=<trial>) and per-operation figures; the log goes to
# bench/work/crash_trials.log. Needs root and iptables, as the integration tests do.
# Usage: bench/crash_trials.sh; TRIALS=50 bench/crash_trials.sh; BERTH_CRASH_SEED=123 bench/crash_trials.sh;
# BERTH_CRASH_MINUTES=20 bench/crash_trials.sh starts no trial after 20 minutes (then reports and cleans up).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$here/work"
log="$here/work/crash_trials.log"
cd "$here/.."
start="$(date +%s)"
set +e
BERTH_CRASH_TRIALS="${TRIALS:-200}" cargo test -p berth --test it crash_trials -- --nocapture 2>&1 | tee "$log" |
    grep --line-buffered -E '^(crash trial|figure: |crash trials:|thread .* panicked|after |before )'
status="${PIPESTATUS[0]}"
set -e
echo "crash_trials.sh: $(($(date +%s) - start)) s wall clock, cargo exit $status; full log in $log"
exit "$status"
