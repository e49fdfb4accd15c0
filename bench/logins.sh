#!/usr/bin/env bash
# Logins: ROUNDS (default 20) rounds against one berth, each creating USERS (default 50) new users in the
# management tenant (POST /user/management/users) and then logging each of them in once with Basic auth
# (GET /user/currentUser as management/<user>:<password>). Every user has its own name and password, so no login
# is answered from the credential cache: each is one argon2 verification (checked on /metrics, counter
# berth_password_verifications_total), and each creation one argon2 hash. Reports Berth's RSS, open descriptors
# and the database's size (with its WAL) at the start, after WARMUP rounds (default 2), after every 5th round and
# at the end, plus the end against the warmed-up state, the RSS after every round and the load average.
#
# Only failed password checks are throttled (platform/src/auth/throttle.rs) and the logins run one at a time, so
# the hashing pool's queue never sheds them: any answer but 200, to a creation or a login, fails the run.
# GET /user/currentUser needs no role; the users get ROLE_USER_MANAGEMENT_OWN_READ (reading one's own user).
# The users stay: what a real installation accumulates (the database grows by their rows and audit records).
# Usage: bench/logins.sh; ROUNDS=10 USERS=20 bench/logins.sh; BERTH=... to skip the release build (BERTH_PACK is
# accepted and unused). Work files go to bench/work/logins/; berth is stopped at the end.
set -euo pipefail
name=logins.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
work="$here/work/logins"
rounds="${ROUNDS:-20}"
users="${USERS:-50}"
warmup="${WARMUP:-2}"
berth_port="${BERTH_PORT:-18473}"

for n in rounds users warmup; do
    [[ "${!n}" =~ ^[0-9]+$ ]] || die "${n^^}=${!n} must be a whole number"
done
((rounds >= 1 && users >= 1)) || die "ROUNDS and USERS must be at least 1"
((warmup < rounds)) || die "WARMUP=$warmup must be below ROUNDS=$rounds"
for tool in docker curl python3; do
    command -v "$tool" > /dev/null 2>&1 || die "$tool is not installed or not on PATH"
done
docker info > /dev/null 2>&1 || die "cannot reach the Docker daemon"

if [[ -n "${BERTH:-}" ]]; then
    berth="$BERTH"
else
    command -v cargo > /dev/null 2>&1 || die "cargo is not installed or not on PATH (or set BERTH)"
    say "building berth (cargo build --release)"
    target_dir="${CARGO_TARGET_DIR:-$workspace/target}"
    (cd "$workspace" && CARGO_TARGET_DIR="$target_dir" cargo build --release --quiet -p berth)
    berth="$target_dir/release/berth"
fi
[[ -x "$berth" ]] || die "$berth must be an executable file"

rm -rf "$work"
mkdir -p "$work"
berth_pid=""
installation=""
cleanup() {
    set +e
    if declare -F stop_berth > /dev/null; then stop_berth; fi
    # Nothing is deployed, so there should be nothing; but never leave an object behind.
    if [[ -n "$installation" ]]; then
        for id in $(docker ps -aq --filter "label=berth.installation=$installation"); do docker rm -f "$id" > /dev/null; done
        for id in $(docker network ls -q --filter "label=berth.installation=$installation"); do docker network rm "$id" > /dev/null; done
    fi
}
trap cleanup EXIT

# shellcheck source=bench/start_berth.sh
source "$here/start_berth.sh"
start_berth
say "berth $(berth_identity) ready; $rounds rounds of $users new users"

rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$berth_pid/status"; }
fds() { find "/proc/$berth_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
db_kib() { du -ck "$work/berth-data"/berth.sqlite3* | tail -n 1 | cut -f1; }
load1() { cut -d' ' -f1 /proc/loadavg; }
verifications() { api "$base/metrics" | awk '$1 == "berth_password_verifications_total" { printf "%d", $2 }'; }
snapshot() {
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(rss_mib)" "$(fds)" "$(db_kib)" "$((created))" "$(load1)"
}

# A per-run secret in every password: a user's password is new to this berth and to every other user.
secret="$(python3 -c 'import secrets; print(secrets.token_hex(6))')"
role='{"references":[{"role":{"id":"ROLE_USER_MANAGEMENT_OWN_READ"}}]}'
created=0
# Creates the round's users, then logs each in once; fails unless every answer is 200 and every login hashed.
round() {
    local r="$1" i user before after code
    for i in $(seq "$users"); do
        user="login-$r-$i"
        api -o "$work/create.out" -H 'Content-Type: application/json' \
            -d "{\"userName\":\"$user\",\"password\":\"Pw-$secret-$r-$i\",\"email\":\"$user@example.com\",\"roles\":$role}" \
            "$base/user/management/users" || die "round $r: creating $user failed: $(head -c 300 "$work/create.out")"
        created=$((created + 1))
    done
    before="$(verifications)"
    for i in $(seq "$users"); do
        user="login-$r-$i"
        code="$(curl -s -o "$work/login.out" -w '%{http_code}' --cacert "$cert" -u "management/$user:Pw-$secret-$r-$i" \
            "$base/user/currentUser" || true)"
        [[ "$code" == 200 ]] || die "round $r: the login of $user answered ${code:-nothing}: $(head -c 300 "$work/login.out")"
    done
    after="$(verifications)"
    # At least one verification per login (the admin's own cached credential may be verified again when its entry
    # expires, so more is fine); fewer means a login was answered without hashing.
    ((after - before >= users)) || die "round $r: $users logins but only $((after - before)) password verifications"
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date -u +%Y-%m-%dT%H:%MZ)"
rows=()
rows+=("$(snapshot start)")
warm_rss="$(rss_mib)"
per_round=()
start="$(now)"
warm_at="$start"
for r in $(seq "$rounds"); do
    round "$r"
    per_round+=("$(rss_mib)")
    label=""
    if ((r == warmup)); then
        label="after $r (warm-up)"
        warm_rss="$(rss_mib)"
        warm_at="$(now)"
    elif ((r % 5 == 0 || r == rounds)); then
        label="after $r"
    fi
    [[ -n "$label" ]] && rows+=("$(snapshot "$label")")
    say "round $r done: $created users, RSS $(rss_mib) MiB"
done
end="$(now)"
end_rss="$(rss_mib)"

echo "Berth $(berth_identity), $started, $(nproc) CPUs, Berth log ${BERTH_LOG:-info}, $rounds rounds × $users users" \
    "(warm-up $warmup rounds); load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '| point | RSS (MiB) | open fds | database (KiB) | users created | load (1 min) |\n'
printf '|---|---|---|---|---|---|\n'
printf '%s\n' "${rows[@]}"
python3 - "$rounds" "$users" "$warmup" "$start" "$warm_at" "$end" "$warm_rss" "$end_rss" "${per_round[@]}" << 'PY'
import sys
rounds, users, warmup = (int(x) for x in sys.argv[1:4])
start, warm_at, end = (float(x) for x in sys.argv[4:7])
warm, last = int(sys.argv[7]), int(sys.argv[8])
rss = [int(x) for x in sys.argv[9:]]
after = rss[warmup:] or rss
print()
print("RSS after each round (MiB): " + " ".join(str(x) for x in rss))
print("After the warm-up: min %d, max %d MiB; end vs warm-up: %d → %d MiB, %+.1f %%"
      % (min(after), max(after), warm, last, (last - warm) * 100 / warm))
print("%d logins (and as many creations) in %.0f s: %.2f s per round of %d (%.2f s after the warm-up)"
      % (rounds * users, end - start, (end - start) / rounds, users, (end - warm_at) / max(rounds - warmup, 1)))
PY
