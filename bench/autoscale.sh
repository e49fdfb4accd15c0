#!/usr/bin/env bash
# Autoscale reaction: from the start of a CPU-saturating load on a one-replica `scale: AUTO` hello (cpu 0.5,
# readiness probe every 1 s) to the second replica serving traffic through Berth's /service proxy, with Berth's
# default autoscaler settings (decision every 2 s, target 80 %, scale-down window 60 s). Then, with the load
# stopped, the time back to one replica (the scale-down window plus drain). Prints a Markdown table.
#
# Settings (environment):
#   RUNS        load/calm cycles (default 2)
#   BERTH_ARGS  extra `berth serve` flags, e.g. "--autoscale-scale-down-window 10"
#   CARGO_TARGET_DIR is honoured for the release builds.
# The load is one `GET /service/hello/burn?ms=500` at a time (one CPU spinning in the container, throttled to its
# 0.5-CPU limit = 100 % utilisation), so it is bounded and ends with the script. Work files: bench/work/autoscale/.
set -euo pipefail
name=autoscale.sh
work="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/work/autoscale"
runs="${RUNS:-2}"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || {
    echo "autoscale.sh: error: RUNS=$runs must be a positive integer" >&2
    exit 1
}
MANIFEST_PATCH='
m["scale"] = "AUTO"
m["replicas"] = 1
m["resources"] = {"cpu": "0.5", "memory": "64M"}
m["readinessProbe"] = {"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}
'
# shellcheck source=bench/berth_hello.sh
source "$(dirname "${BASH_SOURCE[0]}")/berth_hello.sh"

whoami() { service "$base/service/hello/whoami" | json_field 'd["hostname"]' 2> /dev/null || true; }
scale_record_time() {
    api "$base/audit/auditRecords?application=$app_id&type=Autoscaler&pageSize=1" |
        json_field "next((r['time'] for r in d['auditRecords'] if r['activity'] == '$1'), '')"
}

rows=()
for run in $(seq "$runs"); do
    # Calm start: one replica.
    for _ in $(seq 1200); do
        [[ "$(status 'len(d["status"]["deployments"][0]["instances"])')" == 1 ]] && break
        sleep 0.1
    done
    first="$(whoami)"
    [[ -n "$first" ]] || die "no answer from /service/hello/whoami"
    say "run $run: load on $first"
    t0="$(now)"
    (while :; do service -o /dev/null "$base/service/hello/burn?ms=500"; done) &
    load_pid=$!
    t_route="" t_serve=""
    for _ in $(seq 600); do
        if [[ -z "$t_route" && "$(status 'len(d["status"]["deployments"][0]["upstreams"])')" == 2 ]]; then
            t_route="$(now)"
        fi
        host="$(whoami)"
        if [[ -n "$host" && "$host" != "$first" ]]; then
            t_serve="$(now)"
            [[ -n "$t_route" ]] || t_route="$t_serve"
            break
        fi
        sleep 0.1
    done
    [[ -n "$t_serve" ]] || die "no second replica served within 60 s (see $work/berth.log)"
    decided="$(docker_epoch "$(scale_record_time 'Scaled up')")"
    kill "$load_pid" 2> /dev/null
    wait "$load_pid" 2> /dev/null || true
    t_stop="$(now)"
    t_down=""
    for _ in $(seq 1800); do
        if [[ "$(status 'len(d["status"]["deployments"][0]["instances"])')" == 1 ]]; then
            t_down="$(now)"
            break
        fi
        sleep 0.1
    done
    [[ -n "$t_down" ]] || die "did not scale back down within 180 s"
    rows+=("| $run | $(ms_between "$t0" "$decided") | $(ms_between "$t0" "$t_route") | $(ms_between "$t0" "$t_serve") | $(ms_between "$t_stop" "$t_down") |")
done

echo
echo "Autoscale reaction, hello cpu 0.5, Berth defaults (period 2 s, target 80 %, window 60 s)${BERTH_ARGS:+, $BERTH_ARGS}; ms from load start"
echo
echo "| run | scale-up decided | 2nd replica ready in routing | 2nd replica serving via proxy | load stop → back to 1 replica |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "Last decision record:"
api "$base/audit/auditRecords?application=$app_id&type=Autoscaler&pageSize=2" | json_field 'd["auditRecords"][1]["text"]'
