#!/usr/bin/env bash
# Swarm benchmark: Berth on a 3-node swarm-lab (`--runtime swarm`).
#  1. subscription → routable: N tenants (N = 1, 10, 50; SUBSCRIPTIONS overrides) subscribe to a 1-replica
#     PER_TENANT hello (0.1 CPU, 48M); the time from the first subscription until every tenant's
#     GET /service/…/health is 200. First, on 3 healthy nodes; each round's tenants are deleted after it, so 50
#     replicas' reservations fit on 3 nodes of 2 CPUs;
#  2. node loss: hello with 3 replicas (PER_TENANT, subscribed by management) under steady sequential load through
#     Berth's proxy; one worker node's engine is killed (`swarm-lab kill`); counts failed requests and measures the
#     time until the manager reports the node down, until the lost replica left routing, and until 3 replicas are
#     ready again;
# Needs root (the lab). Everything it starts is removed on exit (berth, the lab with its registry, the image).
# Settings: SWARM_LAB (lab script, default /work/shared/lab/swarm-lab), KILL_NODE (default 3), LOAD_SECONDS
# (default 60), SUBSCRIPTIONS (default "1 10 50"), BERTH/BERTH_PACK (prebuilt binaries), WORK (default
# /tmp/berth-bench-swarm).
set -euo pipefail
name=swarm.sh
work="${WORK:-/tmp/berth-bench-swarm}"
lab="${SWARM_LAB:-/work/shared/lab/swarm-lab}"
kill_node="${KILL_NODE:-3}"
load_seconds="${LOAD_SECONDS:-60}"
subscriptions="${SUBSCRIPTIONS:-1 10 50}"
[[ "$(id -u)" == 0 ]] || { echo "$name: needs root (swarm-lab)" >&2; exit 1; }
[[ -x "$lab" ]] || { echo "$name: $lab is missing (set SWARM_LAB)" >&2; exit 1; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lab_name="bsw$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c1-5)"
"$lab" up --name "$lab_name" --nodes 3 > "/tmp/$lab_name.env"
# shellcheck disable=SC1090
source "/tmp/$lab_name.env"
relay="$LAB_REGISTRY/berth-swarm-relay:bench"
IMAGE="$relay" PUSH=1 DOCKER_HOST="$LAB_DOCKER_HOST" "$here/../swarm-relay/build.sh" > /dev/null
export BERTH_ARGS="--runtime swarm --docker-socket ${LAB_DOCKER_HOST#unix://} --registry $LAB_REGISTRY \
--swarm-relay-image $relay --swarm-platform-address $LAB_HOST_IP --reconcile-interval 1"
export MANIFEST_PATCH='m["isolation"] = "PER_TENANT"; m["replicas"] = 3; m["resources"] = {"cpu": "0.1", "memory": "64M"}; m["readinessProbe"] = {"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}'
# shellcheck source=bench/berth_hello.sh
source "$here/berth_hello.sh"
trap 'cleanup; "$lab" down --name "$lab_name" > /dev/null 2>&1; rm -f "/tmp/$lab_name.env"' EXIT

ready_count() {
    status 'sum(1 for d in d["status"]["deployments"] for i in d["instances"] if i["ready"] and not str(i.get("node") or "").startswith("lost"))'
}
for _ in $(seq 300); do [[ "$(ready_count)" == 3 ]] && break; sleep 0.5; done
[[ "$(ready_count)" == 3 ]] || die "3 replicas not ready"
say "3 replicas ready on: $(status '" ".join(sorted(i["node"] for d in d["status"]["deployments"] for i in d["instances"]))')"

# 1. Subscription → routable for N PER_TENANT tenants, 1 replica each.
python3 - "$workspace/examples/hello/cumulocity.json" "$work/one.json" << 'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["name"] = "hello1"; m["isolation"] = "PER_TENANT"; m["replicas"] = 1
# Small reservations (the least a manifest may ask), so 50 tenants fit on 3 nodes of 2 CPUs each.
m["resources"] = {"cpu": "0.1", "memory": "48M"}
m["readinessProbe"] = {"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}
json.dump(m, open(sys.argv[2], "w"))
PY
"$berth_pack" pack --quiet --manifest "$work/one.json" --image "$work/hello/image.tar" --output "$work/one.zip" > /dev/null
one_id="$(api -H 'Content-Type: application/json' -d '{"name":"hello1","key":"hello1-key","type":"MICROSERVICE"}' \
    "$base/application/applications" | json_field 'd["id"]')"
api -F "file=@$work/one.zip" "$base/application/applications/$one_id/binaries" > /dev/null
round=0
for n in $subscriptions; do
    round=$((round + 1))
    tenants=()
    for i in $(seq "$n"); do
        t="sw${round}x$i"
        api -H 'Content-Type: application/json' -d "{\"company\":\"$t\",\"domain\":\"$t.example.com\",\"adminName\":\"boss\",\"adminEmail\":\"boss@example.com\",\"adminPass\":\"$password\"}" \
            "$base/tenant/tenants" > "$work/tenant.json"
        tenants+=("$(json_field 'd["id"]' < "$work/tenant.json")")
    done
    start="$(now)"
    for t in "${tenants[@]}"; do
        api -H 'Content-Type: application/json' -d "{\"application\":{\"id\":\"$one_id\"}}" \
            "$base/tenant/tenants/$t/applications" > /dev/null
    done
    pending=("${tenants[@]}")
    while [[ ${#pending[@]} -gt 0 ]]; do
        left=()
        for t in "${pending[@]}"; do
            code="$(curl -s -o /dev/null -w '%{http_code}' --cacert "$cert" -u "$t/boss:$password" "$base/service/hello1/health" || true)"
            [[ "$code" == 200 ]] || left+=("$t")
        done
        pending=("${left[@]}")
        [[ "$(ms_between "$start" "$(now)")" -gt 600000 ]] && die "$n subscriptions not routable within 600 s"
        [[ ${#pending[@]} -gt 0 ]] && sleep 0.5
    done
    say "subscriptions: $n PER_TENANT tenants routable $(ms_between "$start" "$(now)") ms after the first subscription"
    # The round's tenants go, so the next round has the cluster's CPUs (reservations) to itself.
    for t in "${tenants[@]}"; do
        curl -s -o /dev/null --cacert "$cert" -u "management/admin:$password" -X DELETE "$base/tenant/tenants/$t"
    done
    for _ in $(seq 240); do
        left="$(DOCKER_HOST="$LAB_DOCKER_HOST" docker service ls -q --filter "label=berth.app=$one_id" | wc -l)"
        [[ "$left" == 0 ]] && break
        sleep 0.5
    done
done

# 2. Node loss under load: sequential keep-alive GETs, one line per request (time, status).
python3 - "$base/service/hello/hello" "$cert" "management/admin:$password" "$load_seconds" > "$work/load.txt" << 'PY' &
import base64, http.client, ssl, sys, time, urllib.parse
url, cert, cred, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
u = urllib.parse.urlsplit(url)
ctx = ssl.create_default_context(cafile=cert); ctx.check_hostname = False
auth = {"Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}
conn = None
end = time.time() + seconds
while time.time() < end:
    t = time.time()
    try:
        if conn is None:
            conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)
        conn.request("GET", u.path, headers=auth)
        r = conn.getresponse(); r.read(); code = r.status
    except Exception as e:
        code = 0; conn = None
    print("%.3f %d" % (t, code), flush=True)
PY
load_pid=$!
sleep 10
killed="$(now)"
"$lab" kill --name "$lab_name" "$kill_node" > /dev/null 2>&1
down_at="" ; left_at=""; back_at=""
while [[ -z "$back_at" ]]; do
    t="$(now)"
    [[ -z "$down_at" ]] && DOCKER_HOST="$LAB_DOCKER_HOST" docker node ls --format '{{.Status}}' | grep -q Down && down_at="$t"
    n="$(ready_count)"
    [[ -z "$left_at" && "$n" -lt 3 ]] && left_at="$t"
    [[ -n "$left_at" && "$n" == 3 ]] && back_at="$t"
    [[ "$(ms_between "$killed" "$t")" -gt 180000 ]] && die "no recovery within 180 s"
    sleep 0.2
done
wait "$load_pid"
total="$(wc -l < "$work/load.txt")"
failed="$(awk '$2 != 200' "$work/load.txt" | wc -l)"
say "node loss: $total requests, $failed failed (non-200) during ${load_seconds}s of load"
say "node loss: node down after $(ms_between "$killed" "$down_at") ms, replica out of routing after $(ms_between "$killed" "$left_at") ms, 3 replicas ready again after $(ms_between "$killed" "$back_at") ms"
awk -v k="$killed" '$2 != 200 {printf "  failed request at +%.0f ms: %s\n", ($1 - k) * 1000, $2}' "$work/load.txt" | head -20 >&2
