#!/usr/bin/env bash
# Saturation soak of Berth's /service proxy: MINUTES one-minute wrk runs back to back (wrk -t1 -c32 by default),
# requests rotating over two tenants × two applications × Basic and Bearer (OAI-Secure token) credentials:
#   hello   MULTI_TENANT, 2 replicas  (one replica is killed with `docker kill` halfway, Berth restarts it),
#   hellopt PER_TENANT,   1 replica per tenant.
# Prints a Markdown table with one row per minute: requests/s, p50/p99 latency, non-2xx answers and socket errors,
# Berth's RSS and open file descriptors at the end of the minute; then the growth of RSS and fds from the end of the
# warm-up minute (the first) to the end.
#
# Settings (environment): MINUTES (default 10), CONNECTIONS (32), THREADS (1), KILL_AT (seconds after the start,
# default half of the run), BERTH_LOG (default info), BERTH/BERTH_PACK as in berth_hello.sh.
# Needs docker, curl, python3, wrk. Work files go to bench/work/soak/; everything started is removed at the end.
set -euo pipefail
name=soak.sh
work="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/work/soak"
minutes="${MINUTES:-10}"
connections="${CONNECTIONS:-32}"
threads="${THREADS:-1}"
kill_at="${KILL_AT:-$((minutes * 30))}"
for n in minutes connections threads kill_at; do
    [[ "${!n}" =~ ^[0-9]+$ ]] || {
        echo "soak.sh: error: ${n^^}=${!n} must be a whole number" >&2
        exit 1
    }
done
command -v wrk > /dev/null 2>&1 || {
    echo "soak.sh: error: wrk is not installed (apt-get install -y wrk)" >&2
    exit 1
}

MANIFEST_PATCH='
m["replicas"] = 2
m["resources"] = {"cpu": "1", "memory": "128M"}
m["readinessProbe"] = {"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}
'
BERTH_PORT="${BERTH_PORT:-18463}"
BERTH_ARGS="--reconcile-interval 1"
# shellcheck source=bench/berth_hello.sh
source "$(dirname "${BASH_SOURCE[0]}")/berth_hello.sh"

# The PER_TENANT application: the same image, another manifest.
python3 - "$work/hello/cumulocity.json" "$work/hello/pt.json" << 'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["isolation"] = "PER_TENANT"
m["name"] = "hellopt"
m["replicas"] = 1
m["resources"] = {"cpu": "0.5", "memory": "64M"}
json.dump(m, open(sys.argv[2], "w"))
PY
"$berth_pack" pack --quiet --manifest "$work/hello/pt.json" --image "$work/hello/image.tar" \
    --output "$work/hello/pt.zip" > /dev/null
pt_id="$(api -H 'Content-Type: application/json' -d '{"name":"hellopt","key":"hellopt-key","type":"MICROSERVICE"}' \
    "$base/application/applications" | json_field 'd["id"]')"
# Deleting it removes Berth's image tag of it; berth_hello.sh's cleanup does the rest.
remove_pt() {
    curl -s -o /dev/null --max-time 40 --cacert "$cert" -u "management/admin:$password" -X DELETE \
        "$base/application/applications/$pt_id"
}
trap 'remove_pt; cleanup' EXIT
api -F "file=@$work/hello/pt.zip" "$base/application/applications/$pt_id/binaries" > /dev/null

run_id="$(date +%s)"
tenants=()
for i in 1 2; do
    tid="$(api -H 'Content-Type: application/json' \
        -d "{\"company\":\"soak$i\",\"domain\":\"soak$i-$run_id.example.com\",\"adminName\":\"boss\",\"adminEmail\":\"b@example.com\",\"adminPass\":\"$password\"}" \
        "$base/tenant/tenants" | json_field 'd["id"]')"
    tenants+=("$tid")
    for app in "$app_id" "$pt_id"; do
        api -H 'Content-Type: application/json' -d "{\"application\":{\"id\":\"$app\"}}" \
            "$base/tenant/tenants/$tid/applications" > /dev/null
    done
done

# Authorization headers: Basic and Bearer for each tenant's admin.
headers=()
for tid in "${tenants[@]}"; do
    headers+=("Basic $(printf '%s' "$tid/boss:$password" | base64 -w0)")
    token="$(curl -sS --fail-with-body --cacert "$cert" -X POST \
        --data-urlencode grant_type=PASSWORD --data-urlencode "username=$tid/boss" \
        --data-urlencode "password=$password" "$base/tenant/oauth/token" | json_field 'd["access_token"]')"
    headers+=("Bearer $token")
done
for header in "${headers[@]}"; do
    for app in hello hellopt; do
        code=""
        for _ in $(seq 300); do
            code="$(curl -s -o /dev/null -w '%{http_code}' --cacert "$cert" -H "Authorization: $header" \
                "$base/service/$app/hello" || true)"
            [[ "$code" == 200 ]] && break
            sleep 0.2
        done
        [[ "$code" == 200 ]] || die "/service/$app/hello answered $code for ${header%% *} credentials"
    done
done
say "two tenants × two applications × Basic/Bearer all answer 200"

# The wrk script: one request per (application, credential), in rotation.
lua="$work/soak.lua"
{
    echo 'local requests = {}'
    echo 'local i = 0'
    echo 'init = function(args)'
    for header in "${headers[@]}"; do
        for app in hello hellopt; do
            printf '  table.insert(requests, wrk.format("GET", "/service/%s/hello", {["Authorization"] = "%s"}))\n' \
                "$app" "$header"
        done
    done
    echo 'end'
    echo 'request = function()'
    echo '  i = i % #requests + 1'
    echo '  return requests[i]'
    echo 'end'
} > "$lua"

rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$berth_pid/status"; }
fds() { find "/proc/$berth_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }

victim="$(docker ps -q --filter "label=berth.installation=$installation" --filter "label=berth.app=$app_id" | head -n 1)"
[[ -n "$victim" ]] || die "no container of hello to kill"
(
    sleep "$kill_at"
    docker kill "$victim" > /dev/null && echo "killed $victim at ${kill_at}s" >> "$work/kill.log"
) &
killer=$!

say "soaking: $minutes × 60 s, wrk -t$threads -c$connections, replica $victim killed at ${kill_at}s"
rows="$work/rows.txt"
: > "$rows"
for minute in $(seq "$minutes"); do
    out="$(wrk -t"$threads" -c"$connections" -d60s --latency -s "$lua" "$base")"
    printf 'minute %s\n%s\n' "$minute" "$out" >> "$work/wrk.log"
    echo "$minute $(rss_kib) $(fds) $(cut -d' ' -f1 /proc/loadavg)" >> "$rows"
    python3 - "$out" >> "$rows" << 'PY'
import re, sys
t = sys.argv[1]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n = float(m.group(1))
    return n / 1000 if m.group(2) == "us" else n * 1000 if m.group(2) == "s" else n
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {non2xx.group(1) if non2xx else 0} {sum(map(int, sock.groups())) if sock else 0}")
PY
    say "minute $minute: $(tail -n 1 "$rows")"
done
kill "$killer" 2> /dev/null || true
restarted="$(docker inspect --format '{{.RestartCount}} {{.State.Running}}' "$victim" 2> /dev/null || echo "replaced")"

echo "Berth $(berth_identity)," \
    "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, wrk -t$threads -c$connections, $minutes × 60 s," \
    "Berth log ${BERTH_LOG:-info}; $(cat "$work/kill.log" 2> /dev/null || echo 'no kill'); killed container after: $restarted"
echo
python3 - "$rows" << 'PY'
import sys
lines = open(sys.argv[1]).read().split("\n")
rows = []
for a, b in zip(lines[0::2], lines[1::2]):
    minute, rss, fds, load = a.split()
    rps, p50, p99, non2xx, sock = b.split()
    rows.append((int(minute), int(rss), int(fds), float(load), rps, p50, p99, int(non2xx), int(sock)))
print("| minute | requests/s | p50 ms | p99 ms | non-2xx | socket errors | Berth RSS MiB | Berth fds | load avg |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for m, rss, fds, load, rps, p50, p99, bad, sock in rows:
    print(f"| {m} | {rps} | {p50} | {p99} | {bad} | {sock} | {rss / 1024:.1f} | {fds} | {load} |")
if len(rows) > 1:
    base, last = rows[0], rows[-1]
    print()
    print(f"After the warm-up minute: RSS {base[1] / 1024:.1f} → {last[1] / 1024:.1f} MiB "
          f"({(last[1] - base[1]) / base[1] * 100:+.1f} %, max {max(r[1] for r in rows[1:]) / 1024:.1f}), "
          f"fds {base[2]} → {last[2]} (max {max(r[2] for r in rows[1:])}); "
          f"errors: {sum(r[7] for r in rows)} non-2xx, {sum(r[8] for r in rows)} socket errors in total.")
PY
