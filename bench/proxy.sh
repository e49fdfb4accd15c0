#!/usr/bin/env bash
# Benchmarks Berth's /service proxy against nginx in front of the same hello container, with wrk over keep-alive
# connections; prints a Markdown table to stdout. Variants:
#   (a) the hello container directly over HTTP (the floor),
#   (b) Berth (release build) over HTTPS with Basic auth, /service/hello/hello,
#   (c) nginx over HTTPS with auth_basic (htpasswd, apr1) and proxy_pass with upstream keepalive,
#   (d) the same nginx without authentication.
# Every variant sends the same Authorization header, so the container does the same work.
#
# Settings (environment):
#   DURATION     seconds per measured run (default 15), after a WARMUP-second run (default 3)
#   CONNECTIONS  wrk connections (default 64); THREADS wrk threads (default 2)
#   WORKERS      worker count for nginx and Berth (default 2)
#   BERTH_LOG    Berth's log filter (default info: one line per request, like nginx's access_log)
#   BERTH        berth binary to measure; with BERTH_PACK set too, nothing is built (default: cargo build --release
#                -p berth -p berth-pack, honouring CARGO_TARGET_DIR)
# Needs docker, curl, python3, openssl, wrk and nginx (installed with apt-get when missing and running as root).
# Work files go to bench/work/proxy/ (git-ignored). Berth is started and hello deployed by berth_hello.sh; everything
# started is stopped at the end: nginx, the application (so Berth's image tag goes), Berth, the containers and
# networks of this Berth installation and the hello image (all labelled berth.bench=1).
set -euo pipefail
name=proxy.sh
work="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/work/proxy"
duration="${DURATION:-15}"
warmup="${WARMUP:-3}"
connections="${CONNECTIONS:-64}"
threads="${THREADS:-2}"
workers="${WORKERS:-2}"
berth_log="${BERTH_LOG:-info}"
nginx_auth_port=18444
nginx_open_port=18445

for n in duration warmup connections threads workers; do
    [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || {
        echo "proxy.sh: error: ${n^^}=${!n} must be a positive integer" >&2
        exit 1
    }
done
missing=()
for tool in wrk nginx; do command -v "$tool" > /dev/null 2>&1 || missing+=("$tool"); done
if ((${#missing[@]})); then
    [[ "$(id -u)" == 0 ]] || {
        echo "proxy.sh: error: ${missing[*]} not installed: apt-get install -y wrk nginx" >&2
        exit 1
    }
    echo "proxy.sh: installing ${missing[*]} (apt-get)" >&2
    apt-get install -y -q "${missing[@]}" > /dev/null
fi
for tool in openssl wrk nginx; do
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
        listen 127.0.0.1:$nginx_open_port ssl;
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

# One wrk run against URL while PIDS (space-separated, the proxy's processes; may be empty) serve it; prints
# "rps p50_ms p99_ms load1 cpu_us_per_request" (the last "-" without PIDS).
measure() {
    local url="$1" pids="$2" out
    wrk -t"$threads" -c"$connections" -d"${warmup}s" -H "Authorization: $auth" "$url" > /dev/null
    local load ticks_before ticks_after
    load="$(cut -d' ' -f1 /proc/loadavg)"
    # shellcheck disable=SC2086 # a list of pids
    ticks_before="$(cpu_ticks $pids)"
    out="$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -H "Authorization: $auth" "$url")"
    # shellcheck disable=SC2086
    ticks_after="$(cpu_ticks $pids)"
    printf '%s\n' "$out" >> "$work/wrk.log"
    python3 - "$load" "${pids:+$((ticks_after - ticks_before))}" "$(getconf CLK_TCK)" << EOF
import re, sys
text = """$out"""
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n = float(m.group(1))
    return n / 1000 if m.group(2) == "us" else n * 1000 if m.group(2) == "s" else n
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors:
    sys.exit(f"{errors.group(1)} non-2xx answers: {text}")
requests = int(re.search(r"(\d+) requests in", text).group(1))
cpu = f"{int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / requests:.0f}" if sys.argv[2] else "-"
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {sys.argv[1]} {cpu}")
EOF
}

say "measuring: ${duration}s per variant, $connections connections, $threads wrk threads, $workers workers"
nginx_workers="$(pgrep -P "$(cat "$work/nginx/nginx.pid")" | tr '\n' ' ')"
read -r a_rps a_p50 a_p99 a_load a_cpu < <(measure "http://$ip:80/hello" "")
read -r b_rps b_p50 b_p99 b_load b_cpu < <(measure "$base/service/hello/hello" "$berth_pid")
read -r c_rps c_p50 c_p99 c_load c_cpu < <(measure "https://127.0.0.1:$nginx_auth_port/service/hello/hello" "$nginx_workers")
read -r d_rps d_p50 d_p99 d_load d_cpu < <(measure "https://127.0.0.1:$nginx_open_port/service/hello/hello" "$nginx_workers")
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

commit="$(git -C "$workspace" log -1 --format=%h -- platform 2> /dev/null || echo unknown)"
cat << EOF
Berth $commit, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, wrk -t$threads -c$connections -d${duration}s, $workers workers each, Berth log $berth_log

| variant | requests/s | p50 ms | p99 ms | proxy CPU µs/request | load avg (1 min) before |
|---|---:|---:|---:|---:|---:|
| (a) hello direct, HTTP | $a_rps | $a_p50 | $a_p99 | $a_cpu | $a_load |
| (b) Berth, HTTPS + Basic | $b_rps | $b_p50 | $b_p99 | $b_cpu | $b_load |
| (c) nginx, HTTPS + auth_basic | $c_rps | $c_p50 | $c_p99 | $c_cpu | $c_load |
| (d) nginx, HTTPS, no auth | $d_rps | $d_p50 | $d_p99 | $d_cpu | $d_load |

Ratios of requests/s: b/c = $(ratio "$b_rps" "$c_rps"), b/d = $(ratio "$b_rps" "$d_rps"), b/a = $(ratio "$b_rps" "$a_rps"); p99 b/d = $(ratio "$b_p99" "$d_p99"); proxy CPU per request b/d = $(ratio "$b_cpu" "$d_cpu")
EOF
