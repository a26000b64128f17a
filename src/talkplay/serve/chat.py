"""``talkplay chat``: a conversation with any recommender in the terminal.

Reads standard input line by line (so a pipe or tmux can drive it) and prints each turn with
rich: the reply and a numbered table of tracks. Besides free text, a line may be feedback on
the tracks just shown::

    more like this | +            like track 1 (the one the turn played)
    not this one   | -            skip track 1
    +N | like N | N               like track N
    -N | skip N                   skip track N
    /history  /new  /help  /quit  (also: quit, exit, end of input)

The conversation is a ``ChatSession``: liked tracks become evidence, skipped ones never return.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.table import Table

from talkplay.data.dataset import Dataset
from talkplay.recommend.protocol import Recommender
from talkplay.serve.session import (
    LIKE,
    SKIP,
    ChatSession,
    SessionError,
    Turn,
    clean_text,
    run_pending,
)

HELP = ("Type what you want to hear. Feedback on the last tracks: [bold]more like this[/] / "
        "[bold]not this one[/] (track 1), [bold]+N[/] or a number to like track N, [bold]-N[/] "
        "to skip it. Commands: /history, /new, /help, /quit.")
_LIKE_WORDS = {"more like this", "more like that", "more like this one", "like this", "+", "yes"}
_SKIP_WORDS = {"not this one", "not this", "not that one", "skip", "skip this", "-", "next"}
_NUMBERED = re.compile(r"^(?:(?P<sign>[+-])\s*|(?P<word>like|skip)\s+)?(?P<n>\d{1,3})$")


@dataclass
class Command:
    """One parsed input line."""

    kind: str
    """"message", "feedback", "history", "new", "help" or "quit"."""
    text: str = ""
    action: str = ""
    index: int = 0
    """1-based position of the track in the last shown list (feedback)."""


def parse_line(line: str) -> Command:
    """Turn an input line into a command (free text is a message).

    Args:
        line: one line of input.
    Returns:
        The Command.
    """
    text = line.strip()
    low = re.sub(r"[.!?\s]+$", "", text.lower())
    if low in ("/quit", "/exit", "quit", "exit", "/q"):
        return Command("quit")
    if low in ("/help", "help", "?"):
        return Command("help")
    if low in ("/history", "/new"):
        return Command(low[1:])
    if low in _LIKE_WORDS:
        return Command("feedback", action=LIKE, index=1)
    if low in _SKIP_WORDS:
        return Command("feedback", action=SKIP, index=1)
    match = _NUMBERED.match(low)
    if match:
        skip = match["sign"] == "-" or match["word"] == "skip"
        return Command("feedback", action=SKIP if skip else LIKE, index=int(match["n"]))
    return Command("message", text=text)


def show_turn(console: Console, turn: Turn, dataset_tracks: dict) -> None:
    """Print the reply and the recommended tracks of a turn."""
    rec = turn.recommendation
    if rec.reply.strip():
        console.print(f"[bold green]talkplay>[/] {rec.reply}")
    if not rec.tracks:
        console.print("[bold green]talkplay>[/] I found nothing new for that; try other words.")
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name, style in (("#", "bold cyan"), ("title", "bold"), ("artist", ""), ("album", "dim"),
                        ("tags", "green")):
        table.add_column(name, style=style, overflow="fold")
    for i, st in enumerate(rec.tracks, 1):
        t = dataset_tracks.get(st.track_id)
        if t is None:
            table.add_row(str(i), st.track_id, "", "", "")
            continue
        album = f"{t.album} ({t.year})" if t.album and t.year else (t.album or "")
        table.add_row(str(i), t.title, t.artist, album, ", ".join((t.tags or t.pseudo_tags)[:5]))
    console.print(table)


def run_chat(recommender: Recommender, dataset: Dataset, *, k: int = 5, max_turns: int = 50,
             stdin: TextIO, console: Console) -> int:
    """Chat until /quit or end of input.

    Args:
        recommender: any ``Recommender``.
        dataset: the catalog it recommends from.
        k: tracks shown per turn.
        max_turns: turns per conversation (then /new starts another).
        stdin: where lines come from.
        console: where turns are printed.
    Returns:
        The number of turns answered.
    """
    tracks = dataset.track_index()
    session = ChatSession(max_turns=max_turns)
    answered = 0
    console.print(f"[bold]TalkPlay chat[/] with [cyan]{getattr(recommender, 'name', 'recommender')}[/]"
                  f" over {len(tracks):,} tracks. {HELP}")
    echo = not stdin.isatty()  # piped input: print it, so the transcript reads as a chat
    while True:
        console.print("[bold blue]you>[/] ", end="")
        line = stdin.readline()
        if not line:
            console.print()
            break
        if echo:
            console.print(line.rstrip("\n"), markup=False, highlight=False)
        cmd = parse_line(clean_text(line))
        if cmd.kind == "quit":
            break
        if cmd.kind == "message" and not cmd.text:
            continue
        if cmd.kind == "help":
            console.print(HELP)
            continue
        if cmd.kind == "new":
            session = ChatSession(max_turns=max_turns)
            console.print("[dim]new conversation[/]")
            continue
        if cmd.kind == "history":
            for msg in session.history:
                shown = msg.content
                if msg.role == "music" and msg.content in tracks:
                    shown = f"{tracks[msg.content].title} ({msg.content})"
                console.print(f"[dim]{msg.role:>9}[/] {shown}")
            continue
        try:
            if cmd.kind == "feedback":
                last = session.turns[-1].recommendation.tracks if session.turns else []
                if not 1 <= cmd.index <= len(last):
                    console.print(f"[yellow]no track {cmd.index} to give feedback on[/]"
                                  + (f" (1-{len(last)})" if last else "; ask for music first"))
                    continue
                pending = session.prepare_feedback(last[cmd.index - 1].track_id, cmd.action, tracks)
                verb = "liked" if cmd.action == LIKE else "skipped"
                console.print(f"[dim]{verb}: {pending.text}[/]")
            else:
                pending = session.prepare_message(cmd.text)
        except SessionError as e:
            console.print(f"[yellow]{e}[/]")
            continue
        with console.status("thinking ...", spinner="dots"):
            rec = run_pending(recommender, pending, k)
        show_turn(console, session.commit(pending, rec), tracks)
        answered += 1
    return answered
