"""Run every ```python block of the docs against a fresh ``sipx serve`` on port 5060.

    .venv/bin/python docs/run_examples.py [-v] [docs/API.md ...]

A block runs as a script (exit status 0 expected); a block that defines ``test_...``
functions runs under pytest (with pytest-trio's trio mode). Each block gets its own
server, so registrations do not leak from one to the next. A block preceded by the line
``<!-- not run -->`` is skipped. The examples use 127.0.0.1 with ports 5060 (the server),
8080 (its WebSocket listener), 5061 and 5062 (clients); each run uses another loopback
address of 127.0.0.0/8 in their place (the same ports, free there), so that runs can share
a machine (blocks binding the default host, 0.0.0.0, make whole runs take turns: a file
lock). The blocks import the sipx of this checkout (``PYTHONPATH``), whatever the
interpreter has installed.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
PYTHON = sys.executable
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(DOCS.parent), os.environ.get("PYTHONPATH")])),
}
#: this run's stand-in for the 127.0.0.1 of the examples (Linux answers on all of 127/8)
HOST = f"127.{random.randrange(1, 255)}.{random.randrange(256)}.{random.randrange(1, 255)}"
BLOCK_RE = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.S)


def blocks(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in BLOCK_RE.finditer(text):
        if match.group("before").strip() == "<!-- not run -->":
            continue
        line = text.count("\n", 0, match.start("code")) + 1
        found.append((line, match.group("code").replace("127.0.0.1", HOST)))
    return found


def start_server() -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [PYTHON, "-m", "sipx", "serve", "--host", HOST, "--port", "5060", "--ws-port", "8080"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if "listening" not in line:
        server.kill()
        raise SystemExit(f"sipx serve did not start: {line!r}")
    return server


def run(code: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    if re.search(r"^(async )?def test_", code, re.M):
        script = workdir / "test_example.py"
        script.write_text(code, encoding="utf-8")
        command = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += ["-o", "trio_mode=true", str(script)]
    else:
        script = workdir / "example.py"
        script.write_text(code, encoding="utf-8")
        command = [PYTHON, str(script)]
    return subprocess.run(
        command, cwd=workdir, env=ENV, capture_output=True, text=True, timeout=120, check=False
    )


def main(argv: list[str]) -> int:
    # Clients of the examples bind 0.0.0.0:5061 (the default host): one run at a time.
    with open(Path(tempfile.gettempdir()) / "sipx-docs-examples.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return run_all(argv)


def run_all(argv: list[str]) -> int:
    verbose = "-v" in argv
    paths = [Path(a) for a in argv if a != "-v"] or sorted(DOCS.glob("*.md"))
    failures = 0
    for path in paths:
        for line, code in blocks(path):
            server = start_server()
            started = time.monotonic()
            try:
                with tempfile.TemporaryDirectory() as workdir:
                    result = run(code, Path(workdir))
            finally:
                server.terminate()
                server.wait(timeout=10)
            took = time.monotonic() - started
            status = "ok" if result.returncode == 0 else "FAILED"
            print(f"{status:6} {path.name}:{line} ({took:.1f} s)")
            if result.returncode != 0:
                failures += 1
                print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
            elif verbose:
                print("".join(f"    | {out}\n" for out in result.stdout.splitlines()))
    print(f"{failures} failed" if failures else "every example ran")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
