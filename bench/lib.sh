# Sourced first by the bench scripts that build or start Berth: where the bench and the workspace are, the
# management admin's password the scripts start Berth with, and how they talk (say, die) and time (now,
# ms_between). Expects: $name (the script's name, for messages).

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$(cd "$here/.." && pwd)"
password='Bench-Passw0rd'

say() { printf '%s: %s\n' "$name" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$name" "$*" >&2
    exit 1
}
now() { date +%s.%N; }
# Milliseconds between two `date +%s.%N` instants.
ms_between() { python3 -c 'import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))' "$1" "$2"; }
