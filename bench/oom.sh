#!/usr/bin/env bash
# OOM recovery: hello (memory 64M, readiness probe every 1 s) is OOM-killed by `POST /alloc?mb=128` KILLS times
# in a row; for each kill: kill → container running again (Docker FinishedAt → StartedAt), kill → ready again
# through the proxy (`/service/hello/health` answers 200), the app's own start time (StartedAt → its
# "listening" log line) and the recovery minus that start time. Consecutive kills show the restart back-off
# (immediate, then 200 ms doubling). Prints a Markdown table and the OOM-kill audit record of the last kill.
#
# Settings (environment): KILLS (default 4), BERTH_ARGS (extra `berth serve` flags); CARGO_TARGET_DIR is honoured.
# Work files: bench/work/oom/.
set -euo pipefail
name=oom.sh
work="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/work/oom"
kills="${KILLS:-4}"
[[ "$kills" =~ ^[1-9][0-9]*$ ]] || {
    echo "oom.sh: error: KILLS=$kills must be a positive integer" >&2
    exit 1
}
MANIFEST_PATCH='
m["resources"] = {"cpu": "0.5", "memory": "64M"}
m["readinessProbe"] = {"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}
'
# shellcheck source=bench/berth_hello.sh
source "$(dirname "${BASH_SOURCE[0]}")/berth_hello.sh"

container="$(status 'd["status"]["deployments"][0]["instances"][0]["name"]')"
rows=()
for kill in $(seq "$kills"); do
    ip="$(status 'd["status"]["deployments"][0]["instances"][0]["ip"]')"
    before="$(docker inspect -f '{{.State.StartedAt}}' "$container")"
    curl -s -o /dev/null -X POST "http://$ip:80/alloc?mb=128" || true
    ready=""
    for _ in $(seq 600); do
        started="$(docker inspect -f '{{.State.StartedAt}}' "$container")"
        if [[ "$started" != "$before" ]] &&
            [[ "$(service -o /dev/null -w '%{http_code}' "$base/service/hello/health" || true)" == 200 ]]; then
            ready="$(now)"
            break
        fi
        sleep 0.01
    done
    [[ -n "$ready" ]] || die "not ready again within 6 s after kill $kill"
    read -r oom finished started < <(docker inspect -f '{{.State.OOMKilled}} {{.State.FinishedAt}} {{.State.StartedAt}}' "$container")
    [[ "$oom" == true ]] || die "kill $kill: the container was not OOM-killed"
    finished="$(docker_epoch "$finished")"
    started="$(docker_epoch "$started")"
    listening="$(docker logs --timestamps --since "$(date -d "@${started%.*}" -u +%Y-%m-%dT%H:%M:%SZ)" "$container" 2>&1 |
        sed -n 's/^\([^ ]*\) hello: listening.*/\1/p' | tail -n 1)"
    [[ -n "$listening" ]] || die "no listening line after restart $kill"
    listening="$(docker_epoch "$listening")"
    app_start="$(ms_between "$started" "$listening")"
    recovery="$(ms_between "$finished" "$ready")"
    rows+=("| $kill | $(ms_between "$finished" "$started") | $recovery | $app_start | $((recovery - app_start)) |")
done
echo
echo "OOM recovery, hello memory 64M, readiness every 1 s (ms)"
echo
echo "| kill # | kill → running again | kill → ready via proxy | app start (start → listening) | recovery − app start |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "OOM status: $(status 'json.dumps({k: d["status"]["deployments"][0][k] for k in ("oomKills", "lastOomKill", "restarts")})')"
echo "Last record: $(api "$base/audit/auditRecords?application=$app_id&type=OomKill&pageSize=1" | json_field 'd["auditRecords"][0]["text"]')"
