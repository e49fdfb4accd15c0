# Sourced by bench/autoscale.sh and bench/oom.sh: builds release berth + berth-pack and the hello image, starts
# berth on a temp data dir and loopback ports, deploys hello with a manifest patched by MANIFEST_PATCH (Python
# statements on `m`), and removes everything it started on exit (berth, its containers and networks, the image).
# Expects: $name (script name for messages), $work (work dir). With BERTH and BERTH_PACK set to binaries, nothing
# is built but the hello image.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
berth_port="${BERTH_PORT:-18453}"

docker_epoch() {
    python3 -c '
import sys, datetime
t = sys.argv[1].rstrip("Z")
base, _, frac = t.partition(".")
d = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
print("%d.%s" % (d.timestamp(), (frac + "000000000")[:9]))' "$1"
}

for tool in docker curl python3 cargo; do
    command -v "$tool" > /dev/null 2>&1 || die "$tool is not installed or not on PATH"
done
docker info > /dev/null 2>&1 || die "cannot reach the Docker daemon"

target_dir="${CARGO_TARGET_DIR:-$workspace/target}"
if [[ -n "${BERTH:-}" && -n "${BERTH_PACK:-}" ]]; then
    [[ -x "$BERTH" && -x "$BERTH_PACK" ]] || die "BERTH=$BERTH and BERTH_PACK=$BERTH_PACK must be executable files"
    berth="$BERTH"
    berth_pack="$BERTH_PACK"
else
    say "building berth and berth-pack (cargo build --release)"
    (cd "$workspace" && CARGO_TARGET_DIR="$target_dir" cargo build --release --quiet -p berth -p berth-pack)
    berth="$target_dir/release/berth"
    berth_pack="$target_dir/release/berth-pack"
fi

rm -rf "$work"
mkdir -p "$work"
run_id="bench-$(date +%s)-$$"
image="berth-bench-hello:$run_id"
berth_pid=""
installation=""
cleanup() {
    set +e
    # Deleting the application first removes Berth's own tag of the image
    # (berth/<installation>/<tenant>-<id>:<version>).
    if [[ -n "${app_id:-}" && -n "$berth_pid" ]]; then
        curl -s -o /dev/null --max-time 40 --cacert "$cert" -u "management/admin:$password" -X DELETE \
            "$base/application/applications/$app_id"
    fi
    jobs -p | grep -vx "$berth_pid" | xargs -r kill 2> /dev/null
    if declare -F stop_berth > /dev/null; then stop_berth; fi
    if [[ -n "$installation" ]]; then
        for id in $(docker ps -aq --filter "label=berth.installation=$installation"); do docker rm -f "$id" > /dev/null; done
        for id in $(docker network ls -q --filter "label=berth.installation=$installation"); do docker network rm "$id" > /dev/null; done
    fi
    docker rmi -f "$image" > /dev/null 2>&1
}
trap cleanup EXIT

say "building the hello image $image"
IMAGE="$image" SMOKE=0 IMAGE_LABELS="berth.bench=1" OUTPUT_DIR="$work/hello" CARGO_TARGET_DIR="$target_dir" \
    BERTH_PACK="$berth_pack" "$workspace/examples/hello/build.sh" > /dev/null
python3 - "$workspace/examples/hello/cumulocity.json" "$work/hello/cumulocity.json" "${MANIFEST_PATCH:-}" << 'PY'
import json, sys
m = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(m, open(sys.argv[2], "w"))
PY
"$berth_pack" pack --quiet --manifest "$work/hello/cumulocity.json" \
    --image "$work/hello/image.tar" --output "$work/hello/bench.zip" > /dev/null

# shellcheck source=bench/start_berth.sh
source "$here/start_berth.sh"
start_berth
service() { curl -s --cacert "$cert" -u "management/admin:$password" "$@"; }
app_id="$(api -H 'Content-Type: application/json' -d '{"name":"hello","key":"hello-key","type":"MICROSERVICE"}' \
    "$base/application/applications" | json_field 'd["id"]')"
api -F "file=@$work/hello/bench.zip" "$base/application/applications/$app_id/binaries" > /dev/null
api -H 'Content-Type: application/json' -d "{\"application\":{\"id\":\"$app_id\"}}" \
    "$base/tenant/tenants/management/applications" > /dev/null
code=""
for _ in $(seq 300); do
    code="$(service -o /dev/null -w '%{http_code}' "$base/service/hello/health" || true)"
    [[ "$code" == 200 ]] && break
    sleep 0.2
done
[[ "$code" == 200 ]] || die "hello did not become ready behind berth (last status $code)"
status() { api "$base/application/applications/$app_id" | json_field "$1"; }
say "hello ready (application $app_id)"
