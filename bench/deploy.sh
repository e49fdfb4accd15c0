#!/usr/bin/env bash
# Deploy benchmark: how long from a package to the first `200`, Berth against doing it by hand, for images of
# SIZES MiB (default 10 100 1024). Each image is the hello example's static binary plus a filler layer of the
# size, whose files mix text, logs, machine code, sparse data and incompressible assets as bench/make_image.py
# draws them (so deflate and the engine see a realistic mix); the image runs and answers `GET /health`.
#   by hand  `docker load -i image.tar` + `docker run -d -p 127.0.0.1:0:80` + GET /health until 200;
#   Berth    POST the package to /application/applications/{id}/binaries (as `berth-pack deploy` does; the
#            application exists and the management tenant is subscribed already) + GET /service/<app>/health
#            through Berth until 200.
# Both paths start with the image absent from the engine, run ROUNDS times per size interleaved (by hand then
# Berth, then Berth then by hand, ...) so the shared machine's load hits both alike; prints a Markdown table of the
# medians and the ratio Berth / by hand, with the load average before and after.
#
# Berth gets the package in each of PACKINGS: `deflate` (berth-pack's default, what Cumulocity reads) and `zstd`
# (`berth-pack pack --zstd`: image.tar as Zstandard, which Berth unpacks about four times faster). Each round runs
# by hand and every packing, in an order that turns around each round.
#
# The bench manifest's readiness probe has no initial delay (initialDelaySeconds 0): the by-hand path waits for
# nothing either, and a manifest's delay is the tenant's choice, not platform overhead.
#
# Settings (environment):
#   SIZES        image sizes in MiB (default "10 100 1024")
#   ROUNDS       measured rounds per size and path (default 3)
#   PACKINGS     how berth-pack packs image.tar: any of "deflate zstd" (default both)
#   BERTH, BERTH_PACK  binaries to use; with both set nothing is built (default: cargo build --release -p berth
#                -p berth-pack, honouring CARGO_TARGET_DIR)
#   HELLO_TARGET_DIR  cargo target dir for the static hello build (default CARGO_TARGET_DIR)
# Work files go to bench/work/deploy/ (git-ignored; the 1 GiB image needs about 4 GiB there). Everything started is
# removed at the end: the containers, images and networks (labelled berth.bench=1 and berth.test=1), Berth.
set -euo pipefail
name=deploy.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
work="$here/work/deploy"
sizes="${SIZES:-10 100 1024}"
rounds="${ROUNDS:-3}"
packings="${PACKINGS:-deflate zstd}"
for packing in $packings; do
    [[ "$packing" == deflate || "$packing" == zstd ]] || die "PACKINGS: $packing is neither deflate nor zstd"
done
berth_port="${BERTH_PORT:-18463}"
target_dir="${CARGO_TARGET_DIR:-$workspace/target}"
hello_target_dir="${HELLO_TARGET_DIR:-$target_dir}"

[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$rounds must be a positive integer"
for s in $sizes; do [[ "$s" =~ ^[1-9][0-9]*$ ]] || die "SIZES entry $s must be a positive integer (MiB)"; done
for tool in docker curl python3 cargo; do
    command -v "$tool" > /dev/null 2>&1 || die "$tool is not installed or not on PATH"
done
docker info > /dev/null 2>&1 || die "cannot reach the Docker daemon"

if [[ -n "${BERTH:-}" && -n "${BERTH_PACK:-}" ]]; then
    berth="$BERTH"
    berth_pack="$BERTH_PACK"
else
    say "building berth and berth-pack (cargo build --release)"
    (cd "$workspace" && CARGO_TARGET_DIR="$target_dir" cargo build --release --quiet -p berth -p berth-pack)
    berth="$target_dir/release/berth"
    berth_pack="$target_dir/release/berth-pack"
fi
[[ -x "$berth" && -x "$berth_pack" ]] || die "$berth and $berth_pack must be executable files"

rm -rf "$work"
mkdir -p "$work"
run_id="deploy-$(date +%s)-$$"
berth_pid=""
installation=""
app_id=""
images=()
cleanup() {
    set +e
    if [[ -n "$app_id" && -n "$berth_pid" ]]; then delete_app; fi
    docker ps -aq --filter "label=berth.bench.run=$run_id" | xargs -r docker rm -f > /dev/null
    if declare -F stop_berth > /dev/null; then stop_berth; fi
    if [[ -n "$installation" ]]; then
        for id in $(docker ps -aq --filter "label=berth.installation=$installation"); do docker rm -f "$id" > /dev/null; done
        for id in $(docker network ls -q --filter "label=berth.installation=$installation"); do docker network rm "$id" > /dev/null; done
    fi
    for image in "${images[@]}"; do docker rmi -f "$image" > /dev/null 2>&1; done
    rm -rf "$work"/image-*.tar "$work"/context-*
}
trap cleanup EXIT

# 1. The images: hello's static binary (built by examples/hello/build.sh) plus a filler of SIZE MiB.
say "building the hello binary"
SMOKE=0 IMAGE="berth-bench-hello:$run_id" IMAGE_LABELS="berth.bench=1 berth.test=1" OUTPUT_DIR="$work/hello" \
    CARGO_TARGET_DIR="$hello_target_dir" BERTH_PACK="$berth_pack" "$workspace/examples/hello/build.sh" > /dev/null
docker rmi -f "berth-bench-hello:$run_id" > /dev/null
binary="$hello_target_dir/x86_64-unknown-linux-gnu/release/hello"
for size in $sizes; do
    tag="berth-bench-deploy:$size-$run_id"
    context="$work/context-$size"
    mkdir -p "$context/filler"
    cp "$binary" "$context/hello"
    python3 - "$here" "$context/filler" "$size" << 'PY'
import os, random, sys
sys.path.insert(0, sys.argv[1])
import make_image as m
out, total = sys.argv[2], int(sys.argv[3]) * m.MIB
rng = random.Random(total)
code = m.CodeModel(rng)
makers = {"text": m.text_file, "log": m.log_file, "code": code.file, "sparse": m.sparse_file, "random": m.random_file}
for layer, share, plan in m.LAYERS:
    for kind, within, prefix in plan:
        remaining, index = int(total * share * within), 0
        while remaining > 0:
            n = min(m.FILE_SIZE, remaining)
            with open(os.path.join(out, "%s-%s-%s-%04d.bin" % (layer, prefix.replace("/", "_"), kind, index)), "wb") as f:
                f.write(makers[kind](rng, n))
            remaining -= n
            index += 1
PY
    cat > "$context/Dockerfile" << 'EOF'
FROM scratch
COPY hello /hello
COPY filler /filler
LABEL berth.bench=1 berth.test=1
EXPOSE 80
ENTRYPOINT ["/hello"]
EOF
    say "building the $size MiB image"
    DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$context" > /dev/null
    images+=("$tag")
    docker save -o "$work/image-$size.tar" "$tag"
    image_id="$(docker image inspect -f '{{.Id}}' "$tag")"
    images+=("$image_id")
    echo "$image_id" > "$work/image-$size.id"
    rm -rf "$context"
    python3 - "$workspace/examples/hello/cumulocity.json" "$work/manifest-$size.json" "$size" << 'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["name"] = "deploy"
m["version"] = "1.0.%s" % sys.argv[3]
m["readinessProbe"]["initialDelaySeconds"] = 0
json.dump(m, open(sys.argv[2], "w"))
PY
    for packing in $packings; do
        pack_args=()
        [[ "$packing" == zstd ]] && pack_args=(--zstd)
        "$berth_pack" pack --quiet "${pack_args[@]}" --manifest "$work/manifest-$size.json" \
            --image "$work/image-$size.tar" --output "$work/deploy-$size-$packing.zip" > /dev/null
    done
    docker rmi -f "$tag" > /dev/null
done

# 2. Berth (release), the application and its subscription.
# shellcheck source=bench/start_berth.sh
source "$here/start_berth.sh"
# The default upload limit (500 MiB) would refuse the 1 GiB package.
BERTH_ARGS="${BERTH_ARGS:-} --upload-limit 4GiB --image-size-limit 4GiB" start_berth
create_app() {
    app_id="$(api -H 'Content-Type: application/json' -d '{"name":"deploy","key":"deploy-key","type":"MICROSERVICE"}' \
        "$base/application/applications" | json_field 'd["id"]')"
    api -H 'Content-Type: application/json' -d "{\"application\":{\"id\":\"$app_id\"}}" \
        "$base/tenant/tenants/management/applications" > /dev/null
}
# Deleting the application stops its containers and removes Berth's tag (and so the image). The holder pool's
# holders (berth-<installation>-pool-spare-…) serve no application and stay.
delete_app() {
    api -X DELETE "$base/application/applications/$app_id" > /dev/null
    app_id=""
    for _ in $(seq 300); do
        [[ -z "$(docker ps -a --format '{{.Names}}' --filter "label=berth.installation=$installation" |
            grep -Ev '^berth-[^-]+-pool-spare-')" ]] && return
        sleep 0.1
    done
    die "the application's containers were not removed"
}

# Polls a URL until it answers 200 (10 ms apart), for at most 120 s.
until_200() {
    local deadline=$((SECONDS + 120))
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" 2> /dev/null)" == 200 ]]; do
        ((SECONDS < deadline)) || die "no 200 from $* within 120 s"
        sleep 0.01
    done
}
image_absent() {
    docker rmi -f "$1" > /dev/null 2>&1 || true
    ! docker image inspect "$1" > /dev/null 2>&1 || die "image $1 is still present"
}

# 3. One measurement of each path; prints milliseconds.
by_hand() {
    local size="$1" tag="berth-bench-deploy:$size-$run_id" start container port
    start="$(now)"
    docker load -q -i "$work/image-$size.tar" > /dev/null
    container="$(docker run -d --label berth.bench=1 --label berth.test=1 --label "berth.bench.run=$run_id" \
        -p 127.0.0.1:0:80 "$tag")"
    port="$(docker port "$container" 80/tcp | head -n 1 | sed 's/.*://')"
    until_200 "http://127.0.0.1:$port/health"
    ms_between "$start" "$(now)"
    docker rm -f "$container" > /dev/null
    image_absent "$(cat "$work/image-$size.id")"
}
with_berth() {
    local size="$1" packing="$2" start
    create_app
    start="$(now)"
    api -F "file=@$work/deploy-$size-$packing.zip" "$base/application/applications/$app_id/binaries" > /dev/null
    until_200 --cacert "$cert" -u "management/admin:$password" "$base/service/deploy/health"
    ms_between "$start" "$(now)"
    delete_app
    image_absent "$(cat "$work/image-$size.id")"
}

median() { python3 -c 'import statistics, sys; print(round(statistics.median(int(a) for a in sys.argv[1:])))' "$@"; }
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date -u +'%Y-%m-%d %H:%M')"
header="| image | by hand (ms, runs) | by hand median |"
rule="|---|---|---:|"
for packing in $packings; do
    header+=" Berth, $packing (ms, runs) | median | Berth / by hand |"
    rule+="---|---:|---:|"
done
echo "$header"
echo "$rule"
for size in $sizes; do
    image_absent "$(cat "$work/image-$size.id")"
    hand=()
    declare -A platform=()
    for round in $(seq "$rounds"); do
        # by hand first in odd rounds, last in even ones; the packings turn around likewise.
        order=(hand $packings)
        if ((round % 2 == 0)); then
            mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
        fi
        for path in "${order[@]}"; do
            if [[ "$path" == hand ]]; then
                hand+=("$(by_hand "$size")")
            else
                platform[$path]+="$(with_berth "$size" "$path") "
            fi
        done
        line="$size MiB round $round: by hand ${hand[-1]} ms"
        for packing in $packings; do
            last="${platform[$packing]% }"
            line+=", Berth $packing ${last##* } ms"
        done
        say "$line"
    done
    h="$(median "${hand[@]}")"
    row="| $size MiB | ${hand[*]} | $h |"
    for packing in $packings; do
        read -ra runs <<< "${platform[$packing]}"
        b="$(median "${runs[@]}")"
        row+=" ${runs[*]} | $b | $(python3 -c "print('%.2fx' % ($b / $h))") |"
    done
    echo "$row"
    unset platform
done
echo
echo "Run $started UTC, load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)."
