"""``talkplay data ...``: dataset commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from talkplay.cli.app import console, data_app, fail
from talkplay.data.dataset import read_dataset
from talkplay.data.errors import DataError


def print_counts(ds, title: str) -> None:
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for k, v in ds.counts().items():
        table.add_row(k, str(v))
    console.print(table)


@data_app.command("info")
def info(
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset directory.")],
) -> None:
    """Print a dataset's counts and manifest summary."""
    try:
        ds = read_dataset(data)
    except DataError as e:
        fail(str(e))
    print_counts(ds, f"{data} ({ds.manifest.get('source')})")
    console.print(f"split rule: {ds.manifest.get('split_rule')}")
