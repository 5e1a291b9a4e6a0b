"""``python -m sipx._serve``: the same as ``python -m sipx._serve.cli``."""

import sys

from .cli import main

sys.exit(main(prog="python -m sipx._serve"))
