#!/usr/bin/env bash
# Creates (idempotently) the virtualenv the client compatibility suite runs in, with the clients
# pinned in requirements.txt. Usage: tests/clients/setup_venv.sh [VENV_DIR]
# (default: target/c8y-clients-venv). Re-running with the pins already installed does nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/../../target/c8y-clients-venv}"
requirements="$here/requirements.txt"
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
