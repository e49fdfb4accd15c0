#!/usr/bin/env bash
# Benchmarks Berth's /service proxy against nginx in front of the same hello container; prints Markdown tables to
# stdout. Three client scenarios, each against both proxies in the same run, interleaved (Berth then nginx, then
# nginx then Berth, ROUNDS times) so the shared machine's load hits both alike:
#   keep-alive   wrk over keep-alive HTTP/1.1 connections,
#   close        wrk with `Connection: close`: a new TCP connection and TLS handshake per request,
#   h2           h2load over HTTP/2 (CONNECTIONS/4 connections, 4 streams each),
# and for each the median requests/s, p50 and p99 latency, and the proxy's CPU time per request (the steadiest
# figure on a shared machine). Variants: Berth (release build) over HTTPS with Basic auth, /service/hello/hello;
# nginx (Debian, same worker count) as a bare TLS proxy (the target), and once, keep-alive only, the hello container
# directly (the floor) and nginx with auth_basic (what an operator would need for the same protection).
# Every variant sends the same Authorization header, so the container does the same work.
#
# Settings (environment):
#   DURATION     seconds per measured run (default 10), after a WARMUP-second run (default 2)
#   ROUNDS       interleaved rounds per scenario (default 3); SCENARIOS (default "keep-alive close h2")
#   CONNECTIONS  concurrent requests (default 32); THREADS wrk threads (default 1)
#   WORKERS      worker count for nginx and Berth (default 2)
#   BERTH_LOG    Berth's log filter (default info: one line per request, like nginx's access_log)
#   BERTH        berth binary to measure; with BERTH_PACK set too, nothing is built (default: cargo build --release
#                -p berth -p berth-pack, honouring CARGO_TARGET_DIR)
# Needs docker, curl, python3, openssl, wrk, h2load and nginx (installed with apt-get when missing and running as
# root: wrk, nginx, nghttp2-client).
# Work files go to bench/work/proxy/ (git-ignored). Berth is started and hello deployed by berth_hello.sh; everything
# started is stopped at the end: nginx, the application (so Berth's image tag goes), Berth, the containers and
# networks of this Berth installation and the hello image (all labelled berth.bench=1).
set -euo pipefail
name=proxy.sh
work="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/work/proxy"
duration="${DURATION:-10}"
warmup="${WARMUP:-2}"
rounds="${ROUNDS:-3}"
scenarios="${SCENARIOS:-keep-alive close h2}"
connections="${CONNECTIONS:-32}"
threads="${THREADS:-1}"
workers="${WORKERS:-2}"
berth_log="${BERTH_LOG:-info}"
nginx_auth_port=18444
nginx_open_port=18445

for n in duration warmup rounds connections threads workers; do
    [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || {
        echo "proxy.sh: error: ${n^^}=${!n} must be a positive integer" >&2
        exit 1
    }
done
missing=()
for tool in wrk nginx h2load; do
    command -v "$tool" > /dev/null 2>&1 || missing+=("$([[ $tool == h2load ]] && echo nghttp2-client || echo "$tool")")
done
if ((${#missing[@]})); then
    [[ "$(id -u)" == 0 ]] || {
        echo "proxy.sh: error: ${missing[*]} not installed: apt-get install -y wrk nginx nghttp2-client" >&2
        exit 1
    }
    echo "proxy.sh: installing ${missing[*]} (apt-get)" >&2
    apt-get install -y -q "${missing[@]}" > /dev/null
fi
for tool in openssl wrk nginx h2load; do
    command -v "$tool" > /dev/null 2>&1 || {
        echo "proxy.sh: error: $tool is not installed or not on PATH" >&2
        exit 1
    }
done

# The bench manifest lets hello use both cores, so the container is not what limits the proxies.
MANIFEST_PATCH='
m["resources"] = {"cpu": "2", "memory": "128M"}
m["readinessProbe"] = {"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}
'
BERTH_PORT="${BERTH_PORT:-18443}"
BERTH_LOG="$berth_log"
BERTH_ARGS="--reconcile-interval 1"
# Builds, starts Berth and deploys hello; its cleanup deletes the application (and so Berth's image tag),
# stops Berth and removes this installation's containers, networks and the hello image.
# shellcheck source=bench/berth_hello.sh
source "$(dirname "${BASH_SOURCE[0]}")/berth_hello.sh"
mkdir -p "$work/nginx/logs" "$work/nginx/tmp"
stop_nginx() {
    if [[ -f "$work/nginx/nginx.pid" ]]; then kill "$(cat "$work/nginx/nginx.pid")" 2> /dev/null; fi
}
trap 'stop_nginx; cleanup' EXIT

ip="$(status 'd["status"]["deployments"][0]["instances"][0]["ip"]')"
say "hello ready at $ip:80"

auth="Basic $(printf '%s' "management/admin:$password" | base64 -w0)"
printf 'management/admin:%s\n' "$(openssl passwd -apr1 "$password")" > "$work/nginx/htpasswd"
cp "$cert" "$work/nginx/cert.pem"
cp "$work/berth-data/tls/key.pem" "$work/nginx/key.pem"
chmod 0644 "$work/nginx/htpasswd"
cat > "$work/nginx/nginx.conf" << EOF
# What an operator would write: TLS, auth_basic from an htpasswd file, proxy_pass with upstream keepalive.
worker_processes $workers;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
user nobody nogroup;
events { worker_connections 4096; }
http {
    access_log $work/nginx/logs/access.log;
    # Berth puts no limit on requests per client connection; nginx's default (1000) would close HTTP/2
    # connections mid-run (h2load counts their in-flight streams as errors) and make wrk reconnect.
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    ssl_certificate $work/nginx/cert.pem;
    ssl_certificate_key $work/nginx/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    upstream hello { server $ip:80; keepalive 64; }
    server {
        listen 127.0.0.1:$nginx_auth_port ssl;
        location /service/hello/ {
            auth_basic "berth bench";
            auth_basic_user_file $work/nginx/htpasswd;
            proxy_pass http://hello/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
    server {
        listen 127.0.0.1:$nginx_open_port ssl http2;
        location /service/hello/ {
            proxy_pass http://hello/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -t 2> /dev/null || nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -t
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
for port in $nginx_auth_port $nginx_open_port; do
    code="$(curl -s -o /dev/null -w '%{http_code}' -k -H "Authorization: $auth" "https://127.0.0.1:$port/service/hello/hello")"
    [[ "$code" == 200 ]] || die "nginx on port $port answered $code"
done
code="$(curl -s -o /dev/null -w '%{http_code}' -k "https://127.0.0.1:$nginx_auth_port/service/hello/hello")"
[[ "$code" == 401 ]] || die "nginx with auth_basic answered $code without credentials"

# CPU time (user + system, clock ticks) of the given processes so far.
cpu_ticks() {
    local total=0 pid fields
    for pid in "$@"; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends the command name.
        fields="$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f12,13)"
        total=$((total + ${fields% *} + ${fields#* }))
    done
    echo "$total"
}

# One run of SCENARIO against URL while PIDS (space-separated, the proxy's processes; may be empty) serve it; prints
# "rps p50_ms p99_ms load1 cpu_us_per_request" (the last "-" without PIDS).
measure() {
    local scenario="$1" url="$2" pids="$3" out load ticks_before ticks_after
    local h2log="$work/h2load.tsv"
    run() {
        local seconds="$1"
        case "$scenario" in
            keep-alive) wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -H "Authorization: $auth" "$url" ;;
            close) wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -H "Authorization: $auth" \
                -H "Connection: close" "$url" ;;
            h2) rm -f "$h2log"
                h2load -t"$threads" -c"$((connections / 4))" -m4 -D"$seconds" --log-file="$h2log" \
                    -H "Authorization: $auth" "$url" ;;
        esac
    }
    run "$warmup" > /dev/null
    load="$(cut -d' ' -f1 /proc/loadavg)"
    # shellcheck disable=SC2086 # a list of pids
    ticks_before="$(cpu_ticks $pids)"
    out="$(run "$duration")"
    # shellcheck disable=SC2086
    ticks_after="$(cpu_ticks $pids)"
    printf '%s %s\n%s\n' "$scenario" "$url" "$out" >> "$work/load.log"
    python3 - "$scenario" "$load" "${pids:+$((ticks_after - ticks_before))}" "$(getconf CLK_TCK)" "$h2log" << EOF
import re, sys
scenario, load, ticks, clk, h2log = sys.argv[1:6]
text = """$out"""
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n = float(m.group(1))
    return n / 1000 if m.group(2) == "us" else n * 1000 if m.group(2) == "s" else n
if scenario == "h2":
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    requests = int(done.group(1))
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if int(done.group(3)) or int(done.group(4)) or int(status.group(3)) or int(status.group(4)):
        sys.exit(f"failed HTTP/2 requests: {text}")
    lat = sorted(int(line.split()[2]) / 1000 for line in open(h2log) if line.strip())
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
else:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if errors:
        sys.exit(f"{errors.group(1)} non-2xx answers: {text}")
    requests = int(re.search(r"(\d+) requests in", text).group(1))
cpu = f"{int(ticks) / int(clk) * 1e6 / requests:.0f}" if ticks else "-"
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {load} {cpu}")
EOF
}

berth_url="$base/service/hello/hello"
nginx_url="https://127.0.0.1:$nginx_open_port/service/hello/hello"
nginx_workers="$(pgrep -P "$(cat "$work/nginx/nginx.pid")" | tr '\n' ' ')"
say "measuring: $rounds rounds of ${duration}s per scenario and proxy, $connections concurrent, $workers workers"
results="$work/results.txt"
: > "$results"
for scenario in $scenarios; do
    for round in $(seq "$rounds"); do
        # Alternate who goes first, so a load change during a round does not favour one proxy.
        order="berth nginx"
        ((round % 2 == 0)) && order="nginx berth"
        for who in $order; do
            if [[ $who == berth ]]; then
                line="$(measure "$scenario" "$berth_url" "$berth_pid")"
            else
                line="$(measure "$scenario" "$nginx_url" "$nginx_workers")"
            fi
            echo "$scenario $who $line" >> "$results"
            say "$scenario round $round $who: $line"
        done
    done
done
floor="$(measure keep-alive "http://$ip:80/hello" "")"
nginx_auth="$(measure keep-alive "https://127.0.0.1:$nginx_auth_port/service/hello/hello" "$nginx_workers")"

commit="$(berth_identity)"
echo "Berth $commit, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load avg $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$connections concurrent, ${duration}s runs, $rounds interleaved rounds (medians), $workers workers each," \
    "Berth log $berth_log"
echo
python3 - "$results" "$floor" "$nginx_auth" << 'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    scenario, who, rps, p50, p99, load, cpu = line.split()
    rows.setdefault((scenario, who), []).append((float(rps), float(p50), float(p99), float(cpu)))
print("| scenario | proxy | requests/s (median) | runs | p50 ms | p99 ms | proxy CPU µs/request | Berth/nginx req/s | Berth/nginx p99 | Berth/nginx CPU |")
print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
for scenario in dict.fromkeys(s for s, _ in rows):
    med = {}
    for who in ("berth", "nginx"):
        runs = rows.get((scenario, who), [])
        if not runs:
            continue
        med[who] = [statistics.median(r[i] for r in runs) for i in range(4)]
        ratio = ""
        if who == "nginx" and "berth" in med:
            b, n = med["berth"], med["nginx"]
            ratio = f"{b[0] / n[0]:.2f} | {b[2] / n[2]:.2f} | {b[3] / n[3]:.2f}"
        name = "Berth, HTTPS + Basic" if who == "berth" else "nginx, HTTPS, no auth"
        m = med[who]
        runs_text = "/".join(f"{r[0]:.0f}" for r in runs)
        print(f"| {scenario} | {name} | {m[0]:.0f} | {runs_text} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.0f} | {ratio or ' |  | '} |")
floor = sys.argv[2].split()
auth = sys.argv[3].split()
print()
print(f"Once, keep-alive: hello direct over HTTP (the floor) {floor[0]} requests/s, p99 {floor[2]} ms; "
      f"nginx with auth_basic {auth[0]} requests/s, p99 {auth[2]} ms, {auth[4]} µs CPU/request.")
EOF
