#!/usr/bin/env bash
# Churn: CYCLES (default 200) cycles of create application → upload → subscribe (until it answers 200 through the
# proxy) → unsubscribe → delete, against one berth. Reports Berth's RSS, open descriptors, database size (with its
# WAL) and the Docker objects of the installation (containers, networks, Berth's image tags) at the start, after
# WARMUP cycles (default 10) and at the end, plus the time per cycle. What a user would do instead has no churn
# cost to compare with, so the comparison is Berth against itself: the end against the warmed-up state.
# Usage: bench/churn.sh; CYCLES=50 bench/churn.sh; BERTH=... BERTH_PACK=... to skip the release build.
set -euo pipefail
name=churn.sh
work="$(cd "$(dirname "$0")" && pwd)/work/churn"
cycles="${CYCLES:-200}"
warmup="${WARMUP:-10}"
# No name (each cycle's application has its own) and fast readiness, so a cycle is quick.
MANIFEST_PATCH='del m["name"]; m["readinessProbe"].update({"initialDelaySeconds": 0, "periodSeconds": 1})'
# shellcheck source=bench/berth_hello.sh
source "$(dirname "$0")/berth_hello.sh"

rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$berth_pid/status"; }
fds() { find "/proc/$berth_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
db_kib() { du -ck "$work/berth-data"/berth.sqlite3* | tail -n 1 | cut -f1; }
prefix="$(printf '%s' "$installation" | tr -cd '[:alnum:]' | tr '[:upper:]' '[:lower:]')"
objects() {
    # Replica containers (their network holders carry no application label) and deployment networks (not the
    # holder pool's).
    printf '%s containers, %s networks, %s tags' \
        "$(docker ps -aq --filter "label=berth.installation=$installation" --filter label=berth.app | wc -l)" \
        "$(docker network ls -q --filter "label=berth.installation=$installation" --filter label=berth.app | wc -l)" \
        "$(docker images -q --filter "reference=berth/$prefix/*" | wc -l)"
}
package_files() { find "$work/berth-data/packages" -type f | wc -l; }
snapshot() { printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(rss_mib)" "$(fds)" "$(db_kib)" "$(objects)" "$(package_files)"; }

cycle() {
    local i="$1" id code
    id="$(api -H 'Content-Type: application/json' \
        -d "{\"name\":\"churn-$i\",\"key\":\"churn-$i-key\",\"type\":\"MICROSERVICE\"}" \
        "$base/application/applications" | json_field 'd["id"]')"
    api -F "file=@$work/hello/bench.zip" "$base/application/applications/$id/binaries" > /dev/null
    api -H 'Content-Type: application/json' -d "{\"application\":{\"id\":\"$id\"}}" \
        "$base/tenant/tenants/management/applications" > /dev/null
    code=""
    for _ in $(seq 600); do
        code="$(service -o /dev/null -w '%{http_code}' "$base/service/churn-$i/health" || true)"
        [[ "$code" == 200 ]] && break
        sleep 0.1
    done
    [[ "$code" == 200 ]] || die "cycle $i: churn-$i never answered (last status $code)"
    api -X DELETE "$base/tenant/tenants/management/applications/$id" > /dev/null
    api -X DELETE "$base/application/applications/$id" > /dev/null
}

rows=()
rows+=("$(snapshot start)")
start="$(now)"
warm_at="$start"
for i in $(seq "$cycles"); do
    cycle "$i"
    if ((i == warmup)); then
        rows+=("$(snapshot "after $warmup (warm-up)")")
        warm_at="$(now)"
    fi
    ((i % 50 == 0)) && say "$i cycles done"
done
end="$(now)"
rows+=("$(snapshot "after $cycles")")
printf '| point | RSS (MiB) | open fds | database (KiB) | Docker objects of the installation | package files |\n'
printf '|---|---|---|---|---|---|\n'
printf '%s\n' "${rows[@]}"
python3 -c '
import sys
c, w, s, wa, e = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
print("\n%d cycles in %.0f s: %.2f s per cycle (%.2f s after the warm-up)" % (c, e - s, (e - s) / c, (e - wa) / max(c - w, 1)))' \
    "$cycles" "$warmup" "$start" "$warm_at" "$end"
say "the hello application of berth_hello.sh stays subscribed throughout: 1 container, 1 network, 1 tag, 1 package"
