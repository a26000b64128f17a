"""CPCD import: the real dev-train file, both schema versions, splits, errors, corrupted input."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from corruption import check_contract, corrupt_doc, corrupt_text
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from talkplay.cli import app
from talkplay.data.cpcd import import_cpcd
from talkplay.data.dataset import read_dataset
from talkplay.data.errors import DataError

CPCD = "cpcd/cpcd_v1.dialogs.dev.train.jsonl"


def dialog(did: str, liked: list[list[str]], disliked: list[list[str]] | None = None, *,
           clusters: bool = False) -> dict:
    """A CPCD dialog in the real schema; ``clusters`` adds the later version's fields."""
    disliked = disliked or [[] for _ in liked]
    ids = list(dict.fromkeys(t for turn in liked + disliked for t in turn))
    tracks = {}
    for t in ids:
        tracks[t] = {"track_ids": t, "track_titles": f"Title {t}", "track_artists": [f"Art {t}"],
                     "track_release_titles": f"Album {t}"}
        if clusters:
            tracks[t] |= {"track_cluster_ids": f"c-{t[0]}", "track_canonical_ids": t}
    turns = [{"user_query": f"{did} asks {i}", "system_response": f"{did} answers {i}",
              "search_queries": [f"q{i}"], "search_results": [[*lk, "unlisted"]],
              "liked_results": lk, "disliked_results": dk}
             for i, (lk, dk) in enumerate(zip(liked, disliked, strict=True))]
    return {"id": did, "turns": turns, "tracks": tracks,
            "goal_playlist": [t for turn in liked for t in turn]}


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def small(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", [
        dialog("d1", [[], ["a", "b"], ["c"]], [[], ["x"], []]),
        dialog("d2", [["a", "d"]], clusters=True),
        dialog("d3", [["e"], ["f", "g"]]),
    ])


def test_real_dev_train_file(shared_data, tmp_path):
    path = shared_data / CPCD
    res = import_cpcd(path, tmp_path / "ds")
    ds = read_dataset(tmp_path / "ds")
    assert len(ds.conversations) == 400 == len(res.dataset.conversations)
    assert len(ds.tracks) == 7527
    # Warm = in a training goal playlist; tracks only shown (never liked) are cold.
    liked = {t for p in ds.playlists for t in p.track_ids}
    assert {t.id for t in ds.tracks if not t.cold} == liked and len(liked) < 7527
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert sum(len(c.meta["turns"]) for c in ds.conversations) == 2129
    assert ds.counts()["music_turns"] == sum(len(t["liked_results"]) for d in raw for t in d["turns"])
    assert len(ds.playlists) == sum(bool(d["goal_playlist"]) for d in raw) == 398
    first, conv = raw[0], ds.conversations[0]
    assert conv.id == first["id"] and conv.meta["goal_playlist"] == first["goal_playlist"]
    track = ds.track_index()["4z-bOdAdias"]
    assert (track.title, track.artists, track.album) == (
        "Single Ladies (Put a Ring on It)", ["Beyoncé"], "I AM...SASHA FIERCE")
    for turn, meta in zip(first["turns"], conv.meta["turns"], strict=True):
        assert conv.messages[meta["user_index"]].content == turn["user_query"]
        assert conv.messages[meta["assistant_index"]].content == turn["system_response"]
        assert [conv.messages[i].content for i in meta["music_indices"]] == turn["liked_results"]
        assert meta["disliked"] == turn["disliked_results"]


def test_real_file_hold_out_is_seeded_and_warm_means_in_a_train_playlist(shared_data, tmp_path):
    path = shared_data / CPCD
    a = import_cpcd(path, tmp_path / "a", test_fraction=0.25, valid_fraction=0.1, seed=7).dataset
    b = import_cpcd(path, tmp_path / "b", test_fraction=0.25, valid_fraction=0.1, seed=7).dataset
    c = import_cpcd(path, tmp_path / "c", test_fraction=0.25, seed=8).dataset
    split = {x.id: x.split for x in a.conversations}
    assert split == {x.id: x.split for x in b.conversations}
    assert split != {x.id: x.split for x in c.conversations}
    assert a.counts()["conversations"] == {"train": 260, "valid": 40, "test": 100}
    raw = {d["id"]: d for d in map(json.loads, path.read_text().splitlines())}
    warm = {t for did, s in split.items() if s == "train" for t in raw[did]["goal_playlist"]}
    assert {t.id for t in a.tracks if t.cold} == {t.id for t in a.tracks} - warm != set()
    assert all(p.split == split[p.id] for p in a.playlists)


def test_both_schema_versions_and_message_layout(tmp_path):
    ds = import_cpcd(small(tmp_path), tmp_path / "ds").dataset
    tracks = ds.track_index()
    assert sorted(tracks) == ["a", "b", "c", "d", "e", "f", "g", "x"]
    assert tracks["d"].cluster_id == "c-d" and tracks["b"].cluster_id is None
    assert tracks["a"].cluster_id is None  # first seen in d1 (old schema); first wins
    d1 = ds.conversations[0]
    assert [m.role for m in d1.messages] == ["user", "assistant", "user", "music", "music",
                                             "assistant", "user", "music", "assistant"]
    assert d1.meta["disliked"] == ["x"] and d1.meta["turns"][1]["search_queries"] == ["q1"]
    assert [p.track_ids for p in ds.playlists] == [["a", "b", "c"], ["a", "d"], ["e", "f", "g"]]


def test_list_valued_text_fields_are_accepted(tmp_path):
    d = dialog("d1", [["a"]])
    d["tracks"]["a"] |= {"track_titles": ["Title A"], "track_release_titles": ["Album A"],
                         "track_ids": ["a"], "track_cluster_ids": [12]}
    t = import_cpcd(write_jsonl(tmp_path / "t.jsonl", [d]), tmp_path / "ds").dataset.tracks[0]
    assert (t.title, t.album, t.cluster_id) == ("Title A", "Album A", "12")


def test_separate_test_file_marks_its_own_tracks_cold(tmp_path):
    test = write_jsonl(tmp_path / "test.jsonl", [dialog("t1", [["a", "z"]])])
    ds = import_cpcd(small(tmp_path), tmp_path / "ds", test=test).dataset
    assert {c.id: c.split for c in ds.conversations}["t1"] == "test"
    assert [t.id for t in ds.tracks if t.cold] == ["x", "z"]  # x: only disliked in d1
    write_jsonl(test, [dialog("d2", [["a"]])])
    with pytest.raises(DataError, match="also in"):
        import_cpcd(small(tmp_path), tmp_path / "ds2", test=test)
    with pytest.raises(DataError, match="not both"):
        import_cpcd(small(tmp_path), tmp_path / "ds2", test=test, test_fraction=0.5)
    assert not (tmp_path / "ds2").exists()


def test_tracks_without_metadata_become_id_only_and_stay_gold(tmp_path):
    records = [json.loads(x) for x in small(tmp_path).read_text().splitlines()]
    records[2]["goal_playlist"].append("nometa")  # no entry in any dialog's tracks
    records[1]["goal_playlist"].append("g")  # g has metadata in d3: metadata wins
    records[0]["turns"][1]["disliked_results"].append("nope")
    res = import_cpcd(write_jsonl(tmp_path / "t.jsonl", records), tmp_path / "ds")
    ds = read_dataset(tmp_path / "ds")
    tracks = ds.track_index()
    assert (tracks["nometa"].title, tracks["nometa"].artists) == ("", [])
    assert tracks["g"].title == "Title g"
    assert ds.conversations[2].meta["goal_playlist"][-1] == "nometa"
    assert any("2 tracks are named by id only" in n for n in res.notes)


def test_track_corpus_becomes_the_catalog(tmp_path):
    records = [json.loads(x) for x in small(tmp_path).read_text().splitlines()]
    records[2]["goal_playlist"].append("nometa")
    corpus = write_jsonl(tmp_path / "tracks.jsonl", [
        {"track_ids": ["nometa"], "track_titles": ["Found"], "track_artists": ["Someone"]},
        {"track_id": "extra", "track_titles": "Extra", "track_artists": ["X"]},
        {"track_id": "a", "track_titles": "Other A"}])  # dialog metadata is kept for a
    res = import_cpcd(write_jsonl(tmp_path / "t.jsonl", records), tmp_path / "ds", tracks=corpus)
    tracks = read_dataset(tmp_path / "ds").track_index()
    assert tracks["nometa"].title == "Found" and tracks["extra"].artists == ["X"]
    assert tracks["a"].title == "Title a" and tracks["extra"].cold
    assert res.dataset.manifest["catalog"].startswith("track corpus")
    write_jsonl(corpus, [{"track_titles": "no id"}])
    with pytest.raises(DataError) as err:
        import_cpcd(write_jsonl(tmp_path / "t.jsonl", records), tmp_path / "ds2", tracks=corpus)
    assert (err.value.file, err.value.line) == (str(corpus), 1)
    assert not (tmp_path / "ds2").exists()


@pytest.mark.parametrize("mutate, line, field", [
    (lambda ds: ds[1]["turns"][0]["liked_results"].append(5), 2, "turns[0].liked_results[2]"),
    (lambda ds: ds[2]["turns"][1].pop("user_query"), 3, "turns[1].user_query"),
    (lambda ds: ds[0]["tracks"]["b"].update(track_artists=5), 1, "tracks['b'].track_artists"),
    (lambda ds: ds[0]["tracks"]["b"].update(track_ids="q"), 1, "tracks['b'].track_ids"),
    (lambda ds: ds[1].update(id="d1"), 2, "id"),
    (lambda ds: ds[2].update(turns=[]), 3, "turns"),
    (lambda ds: ds.__setitem__(1, [ds[1]]), 2, "record"),
])
def test_bad_dialog_names_file_line_and_field(tmp_path, mutate, line, field):
    records = [json.loads(x) for x in small(tmp_path).read_text().splitlines()]
    mutate(records)
    path = write_jsonl(tmp_path / "train.jsonl", records)
    with pytest.raises(DataError) as err:
        import_cpcd(path, tmp_path / "ds")
    assert (err.value.file, err.value.line, err.value.field) == (str(path), line, field)
    assert f"{path}:{line}" in str(err.value)
    assert not (tmp_path / "ds").exists()


def test_skip_invalid_keeps_good_dialogs_and_counts_the_rest(tmp_path):
    path = small(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1][:50], lines[2], "", "[1, 2"]) + "\n")
    res = import_cpcd(path, tmp_path / "ds", skip_invalid=True)
    assert [c.id for c in res.dataset.conversations] == ["d1", "d3"]
    assert res.dropped.total == 2
    assert all(r.startswith("dialog: invalid JSON") for r in res.dropped.counts)
    assert [e.split(": ")[0] for e in res.dropped.examples] == [f"{path}:2", f"{path}:5"]


def test_cli_reports_counts_and_errors(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["data", "import", "cpcd", "--train", str(small(tmp_path)),
                             "--out", str(tmp_path / "ds"), "--test-fraction", "0.34"])
    assert ok.exit_code == 0, ok.output
    assert "conversations" in ok.output and "'test': 1" in ok.output and "wrote" in ok.output
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    bad = runner.invoke(app, ["data", "import", "cpcd", "--train", str(tmp_path / "bad.jsonl"),
                              "--out", str(tmp_path / "ds2")])
    flat = "".join(bad.output.split())  # rich wraps long lines
    assert bad.exit_code == 2 and "bad.jsonl:1:tracks:requiredfieldismissing" in flat
    assert "Traceback" not in bad.output and not (tmp_path / "ds2").exists()


GOOD = [dialog("d1", [["a", "b"], ["c"]], [["x"], []]), dialog("d2", [["a"]], clusters=True)]


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), skip_invalid=st.booleans(), as_text=st.booleans(),
       which=st.integers(0, len(GOOD) - 1))
def test_corrupted_dialogs_error_cleanly_or_import(data, skip_invalid, as_text, which):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "out").mkdir()
        lines = [json.dumps(d) for d in GOOD]
        if as_text:
            how, lines[which] = data.draw(corrupt_text(lines[which]))
        else:
            how, doc = data.draw(corrupt_doc(GOOD[which]))
            lines[which] = json.dumps(doc)
        path = tmp / "train.jsonl"
        path.write_text("\n".join(lines) + "\n")
        out = tmp / "out" / "ds"
        run = lambda: import_cpcd(path, out, skip_invalid=skip_invalid)  # noqa: E731
        event(check_contract(run, out, [path], skip_invalid=skip_invalid, how=how))
