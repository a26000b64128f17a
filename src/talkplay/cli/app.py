"""The Typer application objects that every command module registers on."""

from __future__ import annotations

import logging
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

app = typer.Typer(
    help="TalkPlay: conversational music recommendation by generating music tokens.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
data_app = typer.Typer(help="Build, import and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

# The --quantize option of every command that loads a TalkPlay model (evaluate, chat, serve).
QuantizeOpt = Annotated[str, typer.Option(
    help="TalkPlay systems: none (float32 weights), bf16 (bfloat16 weights: faster on CPUs "
         "with bfloat16 units, rankings barely move), int8 (every linear layer int8 for CPU "
         "inference: faster, rankings move), int8-reply or bf16-int8-reply (the float32 or "
         "bfloat16 model ranks, an int8 copy writes the reply).")]

T = TypeVar("T")
NOISY_LOGGERS = ("faiss", "faiss.loader", "bm25s", "sentence_transformers", "matplotlib", "httpx",
                 "transformers")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])


def fail(message: str, code: int = 2) -> None:
    """Print a clear error (no stack trace) and exit non-zero. The message is printed as
    written (file names, install commands like ``pkg[extra]`` are not read as markup)."""
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def renamed(value: T, old_value: T | None, new: str, old: str) -> T:
    """The value of an option renamed from ``old`` to ``new``.

    The old spelling stays for one release as a hidden option of its own; when it is given,
    a note names the new one. Repeatable options take the values of both spellings.

    Args:
        value: the value of the new option.
        old_value: the value of the hidden old option (None or [] when not given).
        new: the new option name, e.g. ``--clusters``.
        old: the old option name, e.g. ``--k``.
    Returns:
        The value to use.
    """
    if old_value is None or old_value == []:
        return value
    console.print(f"[yellow]note:[/] {old} is now {new}; {old} goes away in the next release")
    if isinstance(old_value, list):
        return [*(value or []), *old_value]  # type: ignore[return-value]
    return old_value


def quiet_libraries() -> None:
    """Keep third-party INFO chatter (faiss, bm25s, model loading bars) off the console.

    Does nothing under ``--verbose`` (root logger at DEBUG). Some libraries set their logger's
    level when imported (bm25s), so call it again after importing them.
    """
    if logging.getLogger().level <= logging.DEBUG:
        return
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def progress_bar(*extra: ProgressColumn, remaining: bool = True, transient: bool = False,
                 disable: bool = False) -> Progress:
    """The progress bar every command uses: description, bar, done/total, elapsed, remaining.

    Args:
        *extra: columns appended after the standard ones.
        remaining: show the time-remaining estimate.
        transient: erase the bars when done.
        disable: hide the bars (e.g. on non-main processes).
    Returns:
        A ``rich.progress.Progress`` on the shared console (use as a context manager).
    """
    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn()]
    if remaining:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, *extra, console=console, transient=transient, disable=disable)


def task_per_key(bar: Progress, label=str):
    """A ``progress(key, done, total)`` callback that gives each key its own task on ``bar``,
    described by ``label(key)`` (the key itself by default)."""
    tasks: dict = {}

    def progress(key, done: int, total: int) -> None:
        if key not in tasks:
            tasks[key] = bar.add_task(label(key), total=total)
        bar.update(tasks[key], completed=done)

    return progress
