#!/usr/bin/env bash
# Many tenants: subscribes COUNTS tenants (default "10 50 200") to a PER_TENANT hello and measures the time
# until every tenant gets 200 through the proxy, against the hand floor (N × `docker network create` +
# `docker run` of the same image and limits, until each answers on its IP), plus Berth's RSS, its reconcile
# pass time (berth_reconcile_pass_seconds on /metrics) and the API's latency while it happens.
# Usage: bench/tenants.sh; COUNTS="10 50" bench/tenants.sh; BERTH=... BERTH_PACK=... to skip the release build.
set -euo pipefail
name=tenants.sh
work="$(cd "$(dirname "$0")" && pwd)/work/tenants"
counts="${COUNTS:-10 50 200}"
MANIFEST_PATCH='m["isolation"] = "PER_TENANT"; m["resources"] = {"cpu": "0.1", "memory": "16M"}'
# shellcheck source=bench/berth_hello.sh
source "$(dirname "$0")/berth_hello.sh"

hand_image="$(docker images -q "$image" | head -n 1)"
metric() { service "$base/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$berth_pid/status"; }

# API latency sampler: GET of the application every 0.2 s; prints median and max ms at the end.
sample_api() {
    : > "$work/api.ms"
    while true; do
        curl -s -o /dev/null -w '%{time_total}\n' --cacert "$cert" -u "management/admin:$password" \
            "$base/application/applications/$app_id" >> "$work/api.ms"
        sleep 0.2
    done
}
api_summary() {
    python3 -c '
import sys
v = sorted(float(x) * 1000 for x in open(sys.argv[1]) if x.strip())
print("%d samples, median %.0f ms, p95 %.0f ms, max %.0f ms" % (len(v), v[len(v)//2], v[int(len(v)*0.95)], v[-1]) if v else "no samples")' "$1"
}

hand_floor() {
    local n="$1" start end pending ip
    start="$(now)"
    for i in $(seq "$n"); do
        # Own /28s, as Berth does: Docker's default pools hold only about 30 networks.
        docker network create --label berth.bench=1 --subnet "10.214.$((i / 16)).$((i % 16 * 16))/28" \
            "$run_id-hand-$i" > /dev/null
        docker run -d --label berth.bench=1 --name "$run_id-hand-$i" --network "$run_id-hand-$i" \
            --memory 16m --cpus 0.1 "$hand_image" > /dev/null
    done
    pending="$(seq "$n")"
    while [[ -n "$pending" ]]; do
        local still=""
        for i in $pending; do
            ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$run_id-hand-$i")"
            [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$ip/health" || true)" == 200 ]] ||
                still="$still $i"
        done
        pending="$still"
    done
    end="$(now)"
    ms_between "$start" "$end"
    for i in $(seq "$n"); do
        docker rm -f "$run_id-hand-$i" > /dev/null
        docker network rm "$run_id-hand-$i" > /dev/null
    done
}

printf '| tenants | Berth: all 200 (s) | hand floor (s) | ratio | RSS before/after (MiB) | reconcile pass p50/p99/max-seen (ms) | API latency |\n'
printf '|---|---|---|---|---|---|---|\n'
for n in $counts; do
    say "$n tenants: creating them"
    tenants=()
    for i in $(seq "$n"); do
        tid="$(api -H 'Content-Type: application/json' \
            -d "{\"company\":\"b$i\",\"domain\":\"b$i-$n-$run_id.example.com\",\"adminName\":\"boss\",\"adminEmail\":\"b@example.com\",\"adminPass\":\"$password\"}" \
            "$base/tenant/tenants" | json_field 'd["id"]')"
        tenants+=("$tid")
    done
    rss_before="$(rss_mib)"
    sample_api &
    sampler=$!
    say "$n tenants: subscribing"
    start="$(now)"
    for tid in "${tenants[@]}"; do
        api -H 'Content-Type: application/json' -d "{\"application\":{\"id\":\"$app_id\"}}" \
            "$base/tenant/tenants/$tid/applications" > /dev/null
    done
    pending="${tenants[*]}"
    pass_max=0
    while [[ -n "$pending" ]]; do
        still=""
        for tid in $pending; do
            code="$(curl -s -o /dev/null -w '%{http_code}' --cacert "$cert" -u "$tid/boss:$password" \
                "$base/service/hello/health" || true)"
            [[ "$code" == 200 ]] || still="$still $tid"
        done
        pending="$still"
        p="$(metric 'berth_reconcile_pass_seconds{quantile="1"}')"
        pass_max="$(python3 -c 'import sys; print(max(float(sys.argv[1]), float(sys.argv[2] or 0)))' "$pass_max" "$p")"
        elapsed="$(ms_between "$start" "$(now)")"
        ((elapsed < 1800000)) || die "$n tenants: not all served after 30 min; still waiting for:$pending"
    done
    berth_ms="$(ms_between "$start" "$(now)")"
    kill "$sampler" 2> /dev/null
    wait "$sampler" 2> /dev/null || true
    rss_after="$(rss_mib)"
    p50="$(metric 'berth_reconcile_pass_seconds{quantile="0.5"}')"
    p99="$(metric 'berth_reconcile_pass_seconds{quantile="0.99"}')"
    latency="$(api_summary "$work/api.ms")"
    say "$n tenants: unsubscribing"
    for tid in "${tenants[@]}"; do
        api -X DELETE "$base/tenant/tenants/$tid/applications/$app_id" > /dev/null
    done
    for _ in $(seq 600); do
        [[ "$(docker ps -q --filter "label=berth.installation=$installation" --filter label=berth.app | wc -l)" -le 1 ]] && break
        sleep 0.5
    done
    say "$n tenants: hand floor"
    hand_ms="$(hand_floor "$n")"
    python3 -c '
import sys
n, b, h, r0, r1, p50, p99, pmax, lat = sys.argv[1:]
print("| %s | %.1f | %.1f | %.2fx | %s / %s | %.0f / %.0f / %.0f | %s |" % (n, int(b)/1000, int(h)/1000, int(b)/int(h), r0, r1,
      float(p50 or 0)*1000, float(p99 or 0)*1000, float(pmax)*1000, lat))' \
        "$n" "$berth_ms" "$hand_ms" "$rss_before" "$rss_after" "$p50" "$p99" "$pass_max" "$latency"
done
