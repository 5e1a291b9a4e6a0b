#!/usr/bin/env bash
# Set up .venv, then run the linters, the type checker and the whole test suite.
# Integration tests need kamailio and sipp (Debian: kamailio sip-tester); without them they
# are skipped locally, and fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check sipx pytest_sipx.py tests examples bench
.venv/bin/ruff format --check sipx pytest_sipx.py tests examples bench
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
