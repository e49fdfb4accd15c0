#!/usr/bin/env bash
# Benchmarks `berth-pack pack` against `zip -6` (what the official `microservice` script runs) and a plain
# `cp` of the same bytes (the floor) on synthetic docker-save archives; prints a Markdown table to stdout.
#
# Settings (environment):
#   SIZES       archive sizes in MiB, space-separated (default "256 1024"); SIZE_MB=N runs one size only
#   REPEAT      runs per tool and size; the median is reported (default 3)
#   SEED        PRNG seed of the synthetic archive (default 42)
#   BERTH_PACK  berth-pack binary to measure (default: cargo build --release -p berth-pack, honouring
#               CARGO_TARGET_DIR)
#   JOBS        passed as --jobs to berth-pack (default: its own default, the number of CPUs)
# Work files (archives, outputs) go to bench/work/, which is git-ignored; archives are reused across runs.
set -euo pipefail

name=pack.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
work="$here/work"
sizes="${SIZE_MB:-${SIZES:-256 1024}}"
repeat="${REPEAT:-3}"
seed="${SEED:-42}"


for tool in python3 zip unzip cp; do
    command -v "$tool" > /dev/null 2>&1 || die "$tool is not installed (Debian: apt-get install $tool)"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian: apt-get install time); the shell builtin cannot report peak RSS"
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || die "REPEAT=$repeat must be a positive integer"
for size in $sizes; do
    [[ "$size" =~ ^[1-9][0-9]*$ ]] || die "size '$size' in SIZES/SIZE_MB must be a positive number of MiB"
done
jobs_args=()
if [[ -n "${JOBS:-}" ]]; then
    [[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "JOBS=$JOBS must be a positive integer"
    jobs_args=(--jobs "$JOBS")
fi

if [[ -n "${BERTH_PACK:-}" ]]; then
    [[ -x "$BERTH_PACK" ]] || die "BERTH_PACK=$BERTH_PACK is not an executable file"
    berth_pack="$BERTH_PACK"
else
    target_dir="${CARGO_TARGET_DIR:-$workspace/target}"
    say "building berth-pack (cargo build --release -p berth-pack)"
    (cd "$workspace" && CARGO_TARGET_DIR="$target_dir" cargo build --release --quiet -p berth-pack)
    berth_pack="$target_dir/release/berth-pack"
fi
# Which packager was measured: the last commit touching its sources, "+dirty" if they have uncommitted changes.
sources=(packager manifests-schema Cargo.lock)
revision="commit $(git -C "$workspace" log -1 --format=%h -- "${sources[@]}" 2> /dev/null || echo unknown)"
if [[ -n "$(git -C "$workspace" status --porcelain -- "${sources[@]}" 2> /dev/null)" ]]; then
    revision+="+dirty"
fi
[[ -n "${BERTH_PACK:-}" ]] && revision="$BERTH_PACK"

mkdir -p "$work"
results="$work/results.tsv"
: > "$results"

# Runs "$@" once under /usr/bin/time and appends "wall_s rss_kib user_s sys_s" to $timings.
measure() {
    /usr/bin/time -f '%e %M %U %S' -o "$work/time.out" "$@" > /dev/null 2> "$work/run.err" || {
        cat "$work/run.err" >&2
        die "command failed: $*"
    }
    cat "$work/time.out" >> "$timings"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for size in $sizes; do
    input="$work/in-$size"
    image="$input/image.tar"
    stamp="size=$size seed=$seed generator=$(sha256sum "$here/make_image.py" | cut -c1-16)"
    mkdir -p "$input"
    if [[ ! -f "$image" || "$(cat "$input/stamp" 2> /dev/null)" != "$stamp" ]]; then
        say "generating $size MiB docker-save archive (seed $seed)"
        rm -f "$input/stamp"
        python3 "$here/make_image.py" "$image" "$size" "$seed" "bench:1.0.0"
        printf '%s\n' "$stamp" > "$input/stamp"
    fi
    cat > "$input/cumulocity.json" << 'EOF'
{
  "apiVersion": "2",
  "name": "bench",
  "version": "1.0.0",
  "provider": { "name": "Berth bench" },
  "isolation": "MULTI_TENANT",
  "resources": { "cpu": "0.5", "memory": "64M" }
}
EOF
    input_bytes=$(($(stat -c %s "$image") + $(stat -c %s "$input/cumulocity.json")))
    cat "$image" > /dev/null # page cache warm-up, so the first run is not penalised

    out="$work/out"
    mkdir -p "$out"
    for variant in "cp" "zip -6" "berth-pack" "berth-pack --level 1" "berth-pack --store"; do
        timings="$work/timings"
        : > "$timings"
        for _ in $(seq "$repeat"); do
            rm -f "$out"/*
            case "$variant" in
                cp)
                    measure cp "$image" "$input/cumulocity.json" "$out/"
                    output_bytes=$(du -cb "$out"/* | tail -n 1 | cut -f1)
                    ;;
                "zip -6")
                    measure zip -q -6 -j "$out/out.zip" "$input/cumulocity.json" "$image"
                    output_bytes=$(stat -c %s "$out/out.zip")
                    ;;
                berth-pack*)
                    read -r -a extra <<< "${variant#berth-pack}"
                    measure "$berth_pack" pack --quiet "${extra[@]}" "${jobs_args[@]}" \
                        --manifest "$input/cumulocity.json" --image "$image" --output "$out/out.zip"
                    output_bytes=$(stat -c %s "$out/out.zip")
                    ;;
            esac
        done
        # An unreadable zip would make any timing meaningless: test the last output (untimed).
        if [[ -f "$out/out.zip" ]]; then
            unzip -tq "$out/out.zip" > /dev/null || die "$variant wrote a zip that fails unzip -t"
            entries=$(unzip -Z1 "$out/out.zip" | sort | paste -sd' ')
            [[ "$entries" == "cumulocity.json image.tar" ]] || die "$variant wrote entries '$entries'"
        fi
        wall=$(cut -d' ' -f1 "$timings" | median)
        rss=$(cut -d' ' -f2 "$timings" | median)
        cpu=$(awk '{ print $3 + $4 }' "$timings" | median)
        all_walls=$(cut -d' ' -f1 "$timings" | paste -sd/)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$variant" "$wall" "$rss" "$output_bytes" "$input_bytes" \
            "$all_walls" "$cpu" >> "$results"
        say "$size MiB, $variant: median ${wall}s (runs ${all_walls}s), CPU ${cpu}s, peak RSS $((rss / 1024)) MiB"
    done
    rm -rf "$out"
done

# Markdown report, ratios against zip -6 of the same size.
awk -F'\t' -v cpus="$(nproc)" -v repeat="$repeat" -v rev="$revision" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" '
    { size[NR] = $1; tool[NR] = $2; wall[NR] = $3; rss[NR] = $4; out[NR] = $5; in_b[NR] = $6; runs[NR] = $7; cpu[NR] = $8
      if ($2 == "zip -6") { zwall[$1] = $3; zout[$1] = $5; zrss[$1] = $4 }
      if ($2 == "berth-pack") { bwall[$1] = $3; bout[$1] = $5; brss[$1] = $4; order[++n] = $1 } }
    END {
        printf "| input | tool | wall s (median of %d) | runs | CPU s | output MiB | output/input | peak RSS MiB | speed vs zip -6 | size vs zip -6 |\n", repeat
        print "|---|---|---|---|---|---|---|---|---|---|"
        for (i = 1; i <= NR; i++) {
            z = size[i]
            speed = (wall[i] > 0) ? sprintf("%.2fx", zwall[z] / wall[i]) : "inf"
            printf "| %s MiB | `%s` | %.2f | %s | %.2f | %.1f | %.3f | %.1f | %s | %.3fx |\n", z, tool[i], wall[i], runs[i], cpu[i],
                out[i] / 1048576, out[i] / in_b[i], rss[i] / 1024, speed, out[i] / zout[z]
        }
        print ""
        print "berth-pack: " rev ". Load average at the end: " load "."
        print "Target (default level 6, " cpus " CPUs): >= 3x faster than zip -6, <= 1.05x its size, peak RSS < 64 MiB and flat."
        for (k = 1; k <= n; k++) {
            z = order[k]
            s = (bwall[z] > 0) ? zwall[z] / bwall[z] : 0
            printf "- %s MiB: speed %.2fx (%s), size %.3fx (%s), RSS %.1f MiB (%s)\n", z,
                s, (s >= 3 ? "met" : "not met"), bout[z] / zout[z], (bout[z] <= 1.05 * zout[z] ? "met" : "not met"),
                brss[z] / 1024, (brss[z] < 65536 ? "met" : "not met")
        }
        if (n >= 2) printf "- RSS growth from %s MiB to %s MiB input: %+.1f MiB\n", order[1], order[n], (brss[order[n]] - brss[order[1]]) / 1024
    }' "$results"
