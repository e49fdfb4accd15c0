#!/usr/bin/env bash
# Builds the relay image: static binary -> FROM-scratch image, tagged IMAGE (default berth-swarm-relay:0.2.0).
# With PUSH=1 the image is pushed (IMAGE must then name the registry, e.g. 10.0.0.1:5000/berth-swarm-relay:0.2.0).
# Settings: IMAGE, IMAGE_LABELS (space-separated k=v), DOCKER_HOST (the engine that builds), CARGO_TARGET_DIR.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$(cd "$here/.." && pwd)"
triple=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$workspace/target}"
image="${IMAGE:-berth-swarm-relay:0.2.0}"
(cd "$workspace" && RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TARGET_DIR="$target_dir" cargo build --release --target "$triple" -p swarm-relay)
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$target_dir/$triple/release/swarm-relay" "$ctx/relay"
printf 'FROM scratch\nCOPY relay /relay\nUSER 65534:65534\nENTRYPOINT ["/relay"]\n' > "$ctx/Dockerfile"
labels=(--label berth.component=swarm-relay)
read -r -a extra <<< "${IMAGE_LABELS:-}"
for l in "${extra[@]}"; do labels+=(--label "$l"); done
DOCKER_BUILDKIT=0 docker build -q "${labels[@]}" -t "$image" "$ctx" >/dev/null
[ "${PUSH:-0}" = 1 ] && docker push -q "$image" >/dev/null
echo "$image"
