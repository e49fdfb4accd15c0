# Sourced by bench/berth_hello.sh and bench/deploy.sh: start_berth runs "$berth" serve on a fresh data dir under
# $work, loopback HTTPS on $berth_port, its containers labelled berth.bench=1, and waits until it answers. Sets
# berth_pid, installation, base and cert; stop_berth stops it and removes the host firewall rules it installed (`berth firewall remove`)
# (they outlive the process by design, guarding containers across restarts). Also defines api (curl as the management admin, failing on 4xx/5xx)
# and json_field (a Python expression over the JSON `d` read from stdin). Extra flags come from BERTH_ARGS; the
# log level from BERTH_LOG (default info). Expects: $berth, $work, $berth_port, $password, and say/die.
start_berth() {
    say "starting berth (release${BERTH_ARGS:+, $BERTH_ARGS})"
    # shellcheck disable=SC2086 # BERTH_ARGS is a list of flags
    BERTH_ADMIN_PASSWORD="$password" BERTH_LOG="${BERTH_LOG:-info}" "$berth" serve --data-dir "$work/berth-data" \
        --https "127.0.0.1:$berth_port" --internal-api 0.0.0.0:0 --container-label berth.bench=1 \
        ${BERTH_ARGS:-} > "$work/berth.out" 2> "$work/berth.log" &
    berth_pid=$!
    base="https://127.0.0.1:$berth_port"
    cert="$work/berth-data/tls/cert.pem"
    for _ in $(seq 100); do
        grep -q '^berth: management tenant' "$work/berth.out" 2> /dev/null && break
        kill -0 "$berth_pid" 2> /dev/null || die "berth exited: $(tail -n 5 "$work/berth.log")"
        sleep 0.2
    done
    installation="$(sed -n 's/^berth: installation //p' "$work/berth.out")"
    [[ -n "$installation" ]] || die "berth did not start: $(tail -n 5 "$work/berth.log")"
}
# What was measured, for a results header: the workspace's last platform commit when the script built Berth,
# else the given binary (the workspace may be at another commit than the binary was built from).
berth_identity() {
    if [[ -n "${BERTH:-}" ]]; then
        echo "binary $BERTH (given, $(sha256sum "$BERTH" | cut -c1-12))"
    else
        git -C "$workspace" log -1 --format=%h -- platform 2> /dev/null || echo unknown
    fi
}
api() { curl -sS --fail-with-body --cacert "$cert" -u "management/admin:$password" "$@"; }
json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# Stops Berth (SIGTERM, then waits) and removes the host firewall rules it installed for $installation with
# `berth firewall remove`: they outlive the process by design, and a benchmark's installation is never started again.
stop_berth() {
    if [[ -n "${berth_pid:-}" ]]; then
        kill "$berth_pid" 2> /dev/null
        wait "$berth_pid" 2> /dev/null
    fi
    [[ -n "${installation:-}" ]] || return 0
    "$berth" firewall remove --installation "$installation" > /dev/null || true
}
