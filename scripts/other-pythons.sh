#!/usr/bin/env bash
# Run the unit tests on each newer Python this machine has (3.12, 3.13), each in its own venv
# (.venv-3.12, ...). `--list` prints the interpreters found and runs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {  # a working pythonX.Y: on PATH, or under pyenv's versions
    local version=$1 candidate
    for candidate in "python$version" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python"$version"; do
        if "$candidate" -c 'import sys' >/dev/null 2>&1; then
            command -v "$candidate" || echo "$candidate"
            return 0
        fi
    done
    return 1
}

status=0
for version in 3.12 3.13; do
    python=$(find_python "$version") || { echo "Python $version: not found, skipped"; continue; }
    echo "Python $version: $python"
    [ "${1:-}" = --list ] && continue
    venv=".venv-$version"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' \
        2> >(grep -v "^WARNING: Location" >&2)
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit || status=1
done
exit $status
