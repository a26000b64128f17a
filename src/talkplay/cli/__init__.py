"""``talkplay`` command line. One module per command group; each registers on ``app``."""
# ruff: noqa: I001  (command modules are imported in a fixed order: it is the order of --help)

from talkplay.cli.app import app

# Command modules register their commands on import (one line each).
from talkplay.cli import data  # noqa: F401,E402
from talkplay.cli import synth  # noqa: F401,E402
from talkplay.cli import conversations  # noqa: F401,E402
from talkplay.cli import data_import  # noqa: F401,E402
from talkplay.cli import embed  # noqa: F401,E402
from talkplay.cli import evaluate  # noqa: F401,E402
from talkplay.cli import serve  # noqa: F401,E402
from talkplay.cli import train  # noqa: F401,E402
from talkplay.cli import quickstart  # noqa: F401,E402


def main() -> None:
    app()
