"""``talkplay chat`` driven through a pipe with a real baseline, and its line parser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_serve_api import write_toy_catalog

from talkplay.serve.chat import parse_line

TALKPLAY = Path(sys.executable).parent / "talkplay"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_toy_catalog(tmp_path_factory.mktemp("chat") / "data")


def chat(args: list[str], lines: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([str(TALKPLAY), "chat", *args], input="".join(x + "\n" for x in lines),
                          capture_output=True, text=True, timeout=120, env=env)


def test_parse_line():
    assert parse_line("more like this").action == "like"
    assert parse_line("Not this one!").action == "skip"
    assert (parse_line("+3").action, parse_line("+3").index) == ("like", 3)
    assert (parse_line("-2").action, parse_line("-2").index) == ("skip", 2)
    assert (parse_line("skip 4").action, parse_line("skip 4").index) == ("skip", 4)
    assert (parse_line("2").kind, parse_line("2").action) == ("feedback", "like")
    assert parse_line("like jazz from the 60s").kind == "message"
    assert parse_line("/quit").kind == "quit" and parse_line("exit").kind == "quit"
    assert parse_line("/history").kind == "history" and parse_line("/new").kind == "new"


def test_chat_through_a_pipe_shows_tracks_and_takes_feedback(data):
    out = chat(["--system", "bm25", "--data", str(data), "-k", "3"], [
        "some grunge like Nirvana",
        "not this one",
        "+2",
        "7",
        "/history",
        "calm piano for studying",
        "more like this",
        "/quit",
        "this line is never read",
    ])
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Traceback" not in text + out.stderr
    # First turn: a table of Nirvana tracks with album and tags.
    assert "Smells Like Teen Spirit" in text and "Nevermind (1991)" in text and "grunge" in text
    # "not this one" skips track 1 and names it; "+2" likes track 2 of the new list.
    assert "skipped: Not this one, please. Something else." in text
    assert 'liked: Love "' in text
    assert "no track 7 to give feedback on (1-3)" in text
    # The history holds the user turns (feedback stated as text) and the played tracks.
    history = text[text.index("you> /history"):text.index("you> calm piano")]
    assert "user some grunge like Nirvana" in history
    assert "music Smells Like Teen Spirit (nv1)" in history
    assert "user Not this one, please. Something else." in history
    assert "Another one in the same vein?" in history
    # After the calm piano request, a piano track; the skipped track never comes back.
    piano = text[text.index("you> calm piano for studying"):text.index("you> more like this")]
    assert "Gymnopédie No. 1" in piano and "Smells Like Teen Spirit" not in piano
    assert "liked: Love it. Another one in the same vein?" in text  # track 1 needs no name
    # The baseline answers in words about its first track, from catalog facts.
    assert "talkplay> Here is Smells Like Teen Spirit by Nirvana: " in text
    assert text.count("│ Smells Like Teen Spirit") == 1  # in the first table only
    assert "this line is never read" not in text and "INFO" not in text


def test_chat_ends_at_end_of_input_and_reports_bad_options_cleanly(data, tmp_path):
    out = chat(["--system", "popularity", "--data", str(data)], ["anything"])
    assert out.returncode == 0 and "Smells Like Teen Spirit" in out.stdout  # the most played
    for args, message in (([], "give either --run"),
                          (["--system", "bm25"], "needs --data"),
                          (["--system", "nope", "--data", str(data)], "unknown system"),
                          (["--run", str(tmp_path)], "not a TalkPlay run (no such file)")):
        out = chat(args, [])
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert message in " ".join(out.stdout.split()), out.stdout  # rich wraps long lines
        assert "Traceback" not in out.stdout + out.stderr


def test_a_skipped_played_track_is_marked_rejected_for_every_recommender():
    from talkplay.data.schema import Track
    from talkplay.recommend.protocol import Recommendation, ScoredTrack
    from talkplay.serve.session import SKIP, ChatSession

    session = ChatSession()
    pending = session.prepare_message("some jazz")
    session.commit(pending, Recommendation([ScoredTrack("a", 1.0), ScoredTrack("b", 0.5)]))
    catalog = {"a": Track("a", "A"), "b": Track("b", "B")}
    pending = session.prepare_feedback("a", SKIP, catalog)
    music = [m for m in pending.history if m.role == "music"]
    assert [(m.content, m.feedback) for m in music] == [("a", "rejected")]
    assert pending.exclude == {"a"}
    session.commit(pending, Recommendation([ScoredTrack("b", 0.5)]))
    assert session.rejected == ["a"] and session.history[1].feedback == "rejected"
