"""One meaning per option name across every ``talkplay`` command.

Walks the real command tree and every command's ``--help``. An option name that two or more
commands show must be in ``SHARED`` with its one meaning, and each command's help for it must
say so; a new clash fails here until someone decides it is the same meaning (add it to the
table) or renames one of them.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import typer
from typer.testing import CliRunner

from talkplay.cli import app

# name: (its one meaning, words of which every command's help for it contains at least one)
SHARED: dict[str, tuple[str, tuple[str, ...]]] = {
    "--data": ("the dataset directory the command reads (or adds to)", ("dataset",)),
    "--out": ("where the command writes what it makes", ("write", "output", "results")),
    "--run": ("a TalkPlay run directory (checkpoint, config, metrics)", ("run directory",)),
    "--seed": ("the random seed of what this command samples", ("seed",)),
    "--tracks": ("the size of the catalog the command generates", ("catalog size",)),
    "--playlists": ("how many playlists the command generates", ("number of playlists",)),
    "--profile": ("a settings profile: tiny, small (or paper)", ("small",)),
    "--default-split": ("the split of records whose playlist is not in the catalog",
                        ("split for",)),
    "--splits": ("only conversations or playlists of these splits", ("only",)),
    "--skip-invalid": ("drop bad input records and report them instead of stopping", ("drop",)),
    "--k": ("tracks per turn", ("tracks",)),
    "--max-turns": ("the most turns of one chat session", ("per session",)),
    "--system": ("serve a baseline instead of a TalkPlay run", ("baseline",)),
    "--port": ("the TCP port of the chat server", ("port",)),
    "--batch-size": ("items per batch of the command's model", ("batch",)),
    "--device": ("the torch device the command's models run on", ("cpu",)),
    "--base": ("the pretrained model the command starts from", ("base model", "start from")),
    "--lr": ("the learning rate of what the command trains", ("learning rate",)),
    "--decay": ("the dense / text query's weight decay per user turn of age", ("per user turn",)),
    "--track-weight": ("the query weight of tracks already in the conversation",
                       ("tracks in the history",)),
    "--quantize": ("the TalkPlay model's weights for inference: none, bf16, int8, int8-reply "
                   "or bf16-int8-reply", ("bf16-int8-reply",)),
}

# Old spellings kept (hidden) for one release after a rename: command -> {old: new}.
RENAMED = {
    "tokenize": {"--k": "--clusters", "--k-modality": "--modality-clusters"},
    "data conversations": {"--limit": "--max-playlists", "--max-turns": "--max-music-turns",
                           "--base-url": "--llm-base-url", "--model": "--llm-model",
                           "--api-key": "--llm-api-key", "--work": "--progress-dir"},
    "data import talkplay": {"--split": "--default-split"},
    "data import-json": {"--split": "--default-split"},
}


def commands(command=None, path: tuple[str, ...] = ()):
    """(path, command) of every leaf command under the root, e.g. (("data", "synth"), cmd)."""
    command = command or typer.main.get_command(app)
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from commands(sub, (*path, name))


def options(command, hidden: bool = False):
    """The command's options that are hidden (or not): (names, help)."""
    for p in command.params:
        if p.param_type_name == "option" and bool(p.hidden) == hidden:
            yield [*p.opts, *p.secondary_opts], p.help or ""


def long_name(names: list[str]) -> str:
    return next(n for n in names if n.startswith("--"))


def shown(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


ALL = list(commands())


def test_the_tree_holds_every_command():
    paths = {" ".join(p) for p, _ in ALL}
    for name in ("data synth", "data conversations", "data import mpd", "embed", "tokenize",
                 "train", "evaluate", "chat", "serve", "quickstart"):
        assert name in paths


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=" ".join)
def test_help_shows_every_visible_option_and_no_hidden_one(path):
    command = dict(ALL)[path]
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    for names, _ in options(command):
        assert shown(long_name(names), res.output), (path, names)
    for names, _ in options(command, hidden=True):
        assert not shown(long_name(names), res.output), (path, names)


def test_root_help_lists_the_commands():
    res = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "250"})
    assert res.exit_code == 0
    for name in ("data", "embed", "tokenize", "train", "evaluate", "chat", "serve", "quickstart"):
        assert shown(name, res.output)


def test_an_option_name_means_one_thing_in_every_command():
    used: dict[str, list[tuple[str, str]]] = defaultdict(list)
    short_of: dict[str, set[str]] = defaultdict(set)
    for path, command in ALL:
        for names, help_text in options(command):
            name = long_name(names)
            used[name].append((" ".join(path), help_text))
            for short in (n for n in names if not n.startswith("--")):
                short_of[short].add(name)
    shared = {name: uses for name, uses in used.items() if len(uses) > 1}
    unreviewed = {name: [c for c, _ in uses] for name, uses in shared.items() if name not in SHARED}
    assert not unreviewed, (
        f"option names in several commands with no agreed meaning: {unreviewed}; "
        "rename one, or add the name to SHARED with its one meaning")
    for name, uses in shared.items():
        meaning, words = SHARED[name]
        for command, help_text in uses:
            assert any(w in help_text.lower() for w in words), (
                f"`talkplay {command} {name}`: {help_text!r} does not read as {meaning!r}")
    # A short flag stands for the same long option everywhere (-k is always --k, -o --out).
    assert {s: names for s, names in short_of.items() if len(names) > 1} == {}


def test_renamed_options_keep_their_old_spelling_hidden():
    hidden = {" ".join(p): {long_name(n) for n, _ in options(c, hidden=True)} for p, c in ALL}
    hidden = {path: names for path, names in hidden.items() if names}
    assert hidden == {path: set(old) for path, old in RENAMED.items()}
    visible = {" ".join(p): {long_name(n) for n, _ in options(c)} for p, c in ALL}
    for path, old_to_new in RENAMED.items():
        assert set(old_to_new.values()) <= visible[path]
        assert not set(old_to_new) & visible[path]
