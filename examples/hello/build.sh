#!/usr/bin/env bash
# Builds the hello example end to end: static binary -> FROM-scratch image -> image.tar -> Cumulocity zip.
#
# Settings (environment):
#   IMAGE         image tag to build                       (default hello:<version from cumulocity.json>)
#   OUTPUT_DIR    where image.tar and the zip are written  (default <this dir>/target-image)
#   IMAGE_LABELS  extra image labels, space-separated k=v  (e.g. "berth.test=1"; berth.example=hello is always set)
#   BERTH_PACK    path to the berth-pack binary            (default: berth-pack on PATH, else built with cargo)
#   SMOKE         1 = run the image once and wait for GET /health = 200 (default 1; 0 skips it)
#   CARGO_TARGET_DIR is honoured for both cargo builds.
# Works from any working directory; needs cargo, docker and curl (curl only for the smoke check).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$(cd "$here/../.." && pwd)"
manifest="$here/cumulocity.json"
target_triple=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$workspace/target}"

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() {
    printf 'build.sh: error: %s\n' "$*" >&2
    exit 1
}

need() { command -v "$1" > /dev/null 2>&1 || die "$1 is not installed or not on PATH; $2"; }

# Reads a top-level string field of cumulocity.json without needing jq.
manifest_field() {
    sed -n "s/^[[:space:]]*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$manifest" | head -n 1
}

[[ -f "$manifest" ]] || die "missing $manifest"
need cargo "install Rust (https://rustup.rs)"
need docker "install Docker and make sure the daemon is running"
docker info > /dev/null 2>&1 || die "cannot reach the Docker daemon (is it running, and may this user use /var/run/docker.sock?)"

name="$(manifest_field name)"
version="$(manifest_field version)"
[[ -n "$name" && -n "$version" ]] || die "$manifest must have string fields \"name\" and \"version\""
image="${IMAGE:-$name:$version}"
[[ "$image" == *:* ]] || die "IMAGE=$image must include a tag, e.g. IMAGE=$name:$version"
output_dir="${OUTPUT_DIR:-$here/target-image}"
zip_path="$output_dir/$name-$version.zip"

labels=(--label "berth.example=hello")
read -r -a extra_labels <<< "${IMAGE_LABELS:-}"
for label in "${extra_labels[@]}"; do
    [[ "$label" == ?*=* ]] || die "IMAGE_LABELS entry '$label' must look like key=value"
    labels+=(--label "$label")
done

# 1. Static binary. --target keeps the crt-static RUSTFLAGS away from host build scripts and proc macros;
#    stripping takes the image from ~24 MB (the release profile keeps line tables) to ~4 MB.
say "building static binary (cargo build --release --target $target_triple -p hello)"
(cd "$workspace" && RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TARGET_DIR="$target_dir" cargo build --release --target "$target_triple" -p hello)
binary="$target_dir/$target_triple/release/hello"
[[ -x "$binary" ]] || die "cargo finished but $binary does not exist"
if command -v ldd > /dev/null 2>&1 && ldd "$binary" 2>&1 | grep -q '=>'; then
    die "$binary is dynamically linked; a FROM scratch image needs a static executable"
fi

# 2. Image, built from a throw-away context holding only the Dockerfile and the binary. FROM scratch needs
#    nothing from a registry. The classic builder is forced because BuildKit needs the buildx plugin, which
#    distribution packages of Docker (like the Debian one here) often lack.
mkdir -p "$output_dir"
context="$(mktemp -d "$output_dir/context.XXXXXX")"
container=""
cleanup() {
    rm -rf "$context"
    if [[ -n "$container" ]]; then docker rm -f "$container" > /dev/null 2>&1 || true; fi
}
trap cleanup EXIT
cp "$here/docker/Dockerfile" "$context/Dockerfile"
cp "$binary" "$context/hello"
say "building image $image"
if ! build_log="$(DOCKER_BUILDKIT=0 docker build "${labels[@]}" -t "$image" "$context" 2>&1)"; then
    printf '%s\n' "$build_log" >&2
    die "docker build of $image failed (output above)"
fi

# 3. Optional smoke check: the image must start and answer /health, which catches a broken static build.
if [[ "${SMOKE:-1}" != 0 ]]; then
    need curl "or set SMOKE=0"
    container="$(docker run -d --rm "${labels[@]}" -p 127.0.0.1:0:80 "$image")"
    port="$(docker port "$container" 80/tcp | head -n 1 | sed 's/.*://')"
    [[ -n "$port" ]] || die "container of $image published no port for 80/tcp"
    deadline=$((SECONDS + 20))
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2> /dev/null; do
        if ((SECONDS >= deadline)); then
            docker logs "$container" >&2 || true
            die "image $image did not answer GET /health within 20 s"
        fi
        sleep 0.2
    done
    docker rm -f "$container" > /dev/null
    container=""
    say "smoke check passed: GET /health = 200"
fi

# 4. docker save; written next to its final name and renamed, so a failed save leaves no truncated image.tar.
say "saving $image to $output_dir/image.tar"
docker save -o "$output_dir/image.tar.partial" "$image" || die "docker save $image failed"
chmod 0644 "$output_dir/image.tar.partial"
mv -f "$output_dir/image.tar.partial" "$output_dir/image.tar"

# 5. Pack with berth-pack.
if [[ -n "${BERTH_PACK:-}" ]]; then
    [[ -x "$BERTH_PACK" ]] || die "BERTH_PACK=$BERTH_PACK is not an executable file"
    pack="$BERTH_PACK"
elif command -v berth-pack > /dev/null 2>&1; then
    pack="$(command -v berth-pack)"
else
    say "berth-pack not on PATH: building it (cargo build --release -p berth-pack)"
    (cd "$workspace" && CARGO_TARGET_DIR="$target_dir" cargo build --release -p berth-pack)
    pack="$target_dir/release/berth-pack"
fi
say "packing $zip_path with $pack"
"$pack" pack --quiet --manifest "$manifest" --image "$output_dir/image.tar" --output "$zip_path" >&2 \
    || die "berth-pack pack failed"
[[ -s "$zip_path" ]] || die "berth-pack reported success but $zip_path is missing or empty"

say "done: image $image, $output_dir/image.tar, $zip_path"
printf '%s\n' "$zip_path"
