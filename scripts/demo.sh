#!/usr/bin/env bash
# Set up .venv, install sipx from this checkout, and run `sipx demo` (no external server).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/sipx demo "$@"
