"""talkplay-db conversations joined to an MPD catalog: splits, cold flags, errors, corrupted input."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from corruption import check_contract, corrupt_doc, corrupt_text, dump
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_import_mpd import playlist, write_slice
from typer.testing import CliRunner

from talkplay.cli import app
from talkplay.data.dataset import read_dataset
from talkplay.data.errors import DataError
from talkplay.data.mpd import import_mpd
from talkplay.data.talkplay_db import import_talkplay

URI = "spotify:track:{}".format


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """An MPD import: pids 0..5 on days 0..5; test = pid 5 (only it holds 'late'), valid = pid 4."""
    tmp = tmp_path_factory.mktemp("catalog")
    pls = [playlist(i, ["a", f"t{i}"] + (["late"] if i == 5 else []), day=i) for i in range(6)]
    import_mpd([write_slice(tmp / "in", pls)], tmp / "ds", test_size=1, valid_size=1)
    return tmp / "ds"


def record(pid, cid, *tracks: str) -> dict:
    msgs = [{"role": "user", "content": "something upbeat"}]
    for t in tracks:
        msgs += [{"role": "music", "content": URI(t)}, {"role": "assistant", "content": f"try {t}"},
                 {"role": "user", "content": "more"}]
    return {"pid": pid, "cid": cid, "conversations": msgs}


def records() -> list[dict]:
    return [record(0, "c0", "a", "t0"), record(5, "c5", "late", "a"), record(4, "c4", "t4")]


def test_conversations_take_playlist_split_and_cold_is_recomputed(catalog, tmp_path):
    before = read_dataset(catalog)
    # Warm = in a training playlist: t4 (valid pid 4), t5 and late (test pid 5) are cold.
    assert {t.id for t in before.tracks if t.cold} == {URI("t4"), URI("t5"), URI("late")}
    recs = records() + [record(0, "c-late", "late")]  # a train conversation: no playlist code
    f = dump(tmp_path / "conv.json", recs)
    res = import_talkplay([f], catalog, tmp_path / "ds")
    ds = read_dataset(tmp_path / "ds")
    assert {c.id: c.split for c in ds.conversations} == {
        "c0": "train", "c5": "test", "c4": "valid", "c-late": "train"}
    assert ds.conversations[1].music_ids() == [URI("late"), URI("a")]
    assert ds.conversations[1].playlist_id == "5" and ds.conversations[1].source == "talkplay-db"
    assert len(ds.tracks) == len(before.tracks) and len(ds.playlists) == 6
    assert {t.id for t in ds.tracks if t.cold} == {URI("t4"), URI("t5"), URI("late")}
    assert ds.manifest["catalog"] == str(catalog) and res.notes == [
        "4 of 4 conversations joined a catalog playlist"]


def test_jsonl_and_single_record_json(catalog, tmp_path):
    jl = tmp_path / "conv.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in records()[:2]) + "\n\n")
    one = dump(tmp_path / "one.json", records()[2])
    ds = import_talkplay([jl, one], catalog, tmp_path / "ds").dataset
    assert [c.id for c in ds.conversations] == ["c0", "c5", "c4"]


def test_unknown_playlist_needs_split(catalog, tmp_path):
    f = dump(tmp_path / "conv.json", [*records(), record(999, "c999", "a")])
    with pytest.raises(DataError) as err:
        import_talkplay([f], catalog, tmp_path / "ds")
    assert (err.value.file, err.value.field) == (str(f), "[3].pid") and "--default-split" in str(err.value)
    assert not (tmp_path / "ds").exists()
    ds = import_talkplay([f], catalog, tmp_path / "ds", split="test").dataset
    assert {c.id: c.split for c in ds.conversations}["c999"] == "test"


@pytest.mark.parametrize("mutate, field", [
    (lambda rs: rs[1]["conversations"][4].update(content=URI("nope")), "conversations[4].content"),
    (lambda rs: rs[1]["conversations"][0].update(role="dj"), "conversations[0].role"),
    (lambda rs: rs[1]["conversations"][2].update(content=3), "conversations[2].content"),
    (lambda rs: rs[1].update(cid="c0"), "cid"),
    (lambda rs: rs[1].pop("pid"), "pid"),
    (lambda rs: rs[1].update(conversations=[]), "conversations"),
])
def test_bad_record_names_line_and_field(catalog, tmp_path, mutate, field):
    recs = records()
    mutate(recs)
    jl = tmp_path / "conv.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    with pytest.raises(DataError) as err:
        import_talkplay([jl], catalog, tmp_path / "ds")
    assert (err.value.file, err.value.line, err.value.field) == (str(jl), 2, field)
    res = import_talkplay([jl], catalog, tmp_path / "ds", skip_invalid=True)
    assert [c.id for c in res.dataset.conversations] == ["c0", "c4"] and res.dropped.total == 1


def test_bad_catalog_and_empty_input(tmp_path, catalog):
    f = dump(tmp_path / "conv.json", records())
    with pytest.raises(DataError, match="not a TalkPlay dataset"):
        import_talkplay([f], tmp_path, tmp_path / "ds")
    with pytest.raises(DataError, match="no valid conversations"):
        import_talkplay([dump(tmp_path / "none.json", [])], catalog, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_cli(catalog, tmp_path):
    f = dump(tmp_path / "conv.json", records())
    runner = CliRunner()
    ok = runner.invoke(app, ["data", "import", "talkplay", str(f), "--catalog", str(catalog),
                             "--out", str(tmp_path / "ds")])
    assert ok.exit_code == 0, ok.output
    assert "music_turns" in ok.output and "wrote" in ok.output
    f.write_text("[{")
    bad = runner.invoke(app, ["data", "import", "talkplay", str(f), "--catalog", str(catalog),
                              "--out", str(tmp_path / "ds2")])
    assert bad.exit_code == 2 and "invalidJSON" in "".join(bad.output.split())
    assert "Traceback" not in bad.output and not (tmp_path / "ds2").exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), skip_invalid=st.booleans(), as_text=st.booleans(), jsonl=st.booleans())
def test_corrupted_conversations_error_cleanly_or_import(catalog, data, skip_invalid, as_text,
                                                         jsonl):
    recs = records()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "out").mkdir()
        f = tmp / ("conv.jsonl" if jsonl else "conv.json")
        if as_text:
            text = "\n".join(map(json.dumps, recs)) if jsonl else json.dumps(recs, indent=1)
            how, text = data.draw(corrupt_text(text))
            f.write_text(text)
        else:
            how, doc = data.draw(corrupt_doc(recs))
            text = "\n".join(map(json.dumps, doc)) if jsonl and isinstance(doc, list) else json.dumps(doc)
            f.write_text(text)
        out = tmp / "out" / "ds"
        run = lambda: import_talkplay([f], catalog, out, skip_invalid=skip_invalid)  # noqa: E731
        event(check_contract(run, out, [f], skip_invalid=skip_invalid, how=how))
