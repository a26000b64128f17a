from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

import talkplay.data.dataset as dataset_mod
from talkplay.cli import app
from talkplay.data.dataset import Dataset, read_dataset, write_dataset
from talkplay.data.errors import DataError
from talkplay.data.schema import Conversation, Message, Playlist, Track
from talkplay.data.splits import chronological_split


def toy() -> Dataset:
    tracks = [Track(id=f"t{i}", title=f"Song {i}", artists=["A"], tags=["rock"]) for i in range(6)]
    playlists = [
        Playlist(id="p0", track_ids=["t0", "t1", "t2"], modified_at=86400 * 10),
        Playlist(id="p1", track_ids=["t1", "t2", "t3"], modified_at=86400 * 11),
        Playlist(id="p2", track_ids=["t4", "t5"], modified_at=86400 * 20),
    ]
    convs = [Conversation(id="c0", playlist_id="p2", messages=[
        Message("user", "play something"), Message("music", "t4"), Message("assistant", "ok")])]
    return Dataset(tracks=tracks, playlists=playlists, conversations=convs)


def test_round_trip(tmp_path):
    ds = toy()
    rule = chronological_split(ds, test_size=1)
    write_dataset(tmp_path / "d", ds, source="toy", split_rule=rule)
    back = read_dataset(tmp_path / "d")
    assert [t.id for t in back.tracks] == [t.id for t in ds.tracks]
    assert back.playlists[2].split == "test" and back.conversations[0].split == "test"
    assert {t.id for t in back.tracks if t.cold} == {"t4", "t5"}
    assert back.conversations[0].messages[1] == Message("music", "t4")
    assert back.manifest["counts"]["tracks"] == 6



def test_playlist_entries_share_their_tracks_id_strings(tmp_path, monkeypatch):
    """Reading a playlist gives each entry its catalog track's own id object (one pointer per
    entry, not a string per entry: several GB at MPD's size), across row groups, with the
    same values as the plain reader."""
    monkeypatch.setattr(dataset_mod, "_BATCH", 2)  # three playlists in two row groups
    ds = toy()
    write_dataset(tmp_path / "d", ds, source="toy", split_rule="none")
    back = read_dataset(tmp_path / "d")
    assert [(p.id, p.track_ids) for p in back.playlists] == [(p.id, p.track_ids) for p in ds.playlists]
    ids = {t.id: t.id for t in back.tracks}
    for p in back.playlists:
        assert all(tid is ids[tid] for tid in p.track_ids)

def _snapshot(path):
    ds = read_dataset(path)
    return ([(t.id, t.title) for t in ds.tracks], [(p.id, p.track_ids) for p in ds.playlists],
            [(c.id, c.messages) for c in ds.conversations], ds.manifest)


def test_failed_rewrite_leaves_previous_dataset(tmp_path, monkeypatch):
    path = tmp_path / "d"
    write_dataset(path, toy(), source="toy", split_rule="none")
    (path / "embeddings").mkdir()
    (path / "embeddings" / "x.npy").write_bytes(b"keep")
    before = _snapshot(path)
    bigger = toy()
    bigger.tracks[0].title = "Renamed"
    bigger.playlists[0].track_ids = ["t0"]
    real, calls = dataset_mod._write_table, []

    def fail_after_first(file, schema, rows):
        if calls:
            raise OSError("disk full")
        calls.append(file)
        return real(file, schema, rows)

    monkeypatch.setattr(dataset_mod, "_write_table", fail_after_first)
    with pytest.raises(OSError, match="disk full"):
        write_dataset(path, bigger, source="toy2", split_rule="none")
    assert calls and calls[0].name == "tracks.parquet"  # one new table was complete
    assert _snapshot(path) == before
    tables = [p.name for p in path.glob("tables-*")]
    assert tables == [before[3]["tables"]]  # the half-written directory is gone
    monkeypatch.undo()
    write_dataset(path, bigger, source="toy2", split_rule="none")
    after = read_dataset(path)
    assert after.tracks[0].title == "Renamed" and after.playlists[0].track_ids == ["t0"]
    assert [p.name for p in path.glob("tables-*")] == [after.manifest["tables"]] != tables
    assert (path / "embeddings" / "x.npy").read_bytes() == b"keep"


def test_flat_layout_still_reads_and_is_replaced(tmp_path):
    path = tmp_path / "d"
    write_dataset(path, toy(), source="toy", split_rule="none")
    manifest = json.loads((path / "manifest.json").read_text())
    tables = path / manifest.pop("tables")
    for f in tables.iterdir():  # the layout written before table directories existed
        f.rename(path / f.name)
    tables.rmdir()
    (path / "manifest.json").write_text(json.dumps(manifest))
    old = read_dataset(path)
    assert [t.id for t in old.tracks] == [f"t{i}" for i in range(6)]
    # A "tables" entry carried over from an old manifest must not override the new one.
    write_dataset(path, old, source="toy", split_rule="none", extra={"tables": "tables-stale"})
    assert not list(path.glob("*.parquet"))
    assert read_dataset(path).manifest["tables"] != "tables-stale"
    assert [t.id for t in read_dataset(path).tracks] == [f"t{i}" for i in range(6)]


def test_missing_or_bad_tables_directory(tmp_path):
    path = tmp_path / "d"
    write_dataset(path, toy(), source="toy", split_rule="none")
    manifest = json.loads((path / "manifest.json").read_text())
    shutil.rmtree(path / manifest["tables"])
    with pytest.raises(DataError, match="missing table tables-.*tracks.parquet"):
        read_dataset(path)
    manifest["tables"] = "../elsewhere"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="manifest.json: tables: bad tables directory"):
        read_dataset(path)


def test_info_takes_data_option(tmp_path):
    write_dataset(tmp_path / "d", toy(), source="toy", split_rule="by hand")
    runner = CliRunner()
    for flag in ("--data", "-d"):
        res = runner.invoke(app, ["data", "info", flag, str(tmp_path / "d")])
        assert res.exit_code == 0, res.output
        assert "tracks" in res.output and "by hand" in res.output
    res = runner.invoke(app, ["data", "info", "--data", str(tmp_path)])
    assert res.exit_code == 2 and "not a TalkPlay dataset" in " ".join(res.output.split())


def test_invalid_reference_names_field(tmp_path):
    ds = toy()
    ds.playlists[0].track_ids.append("nope")
    with pytest.raises(DataError, match="playlists.track_ids.*unknown track 'nope'"):
        write_dataset(tmp_path / "d", ds, source="toy", split_rule="none")
    assert not (tmp_path / "d" / "manifest.json").exists()


def test_read_rejects_non_dataset(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        read_dataset(tmp_path)


def test_codebook_round_trip_and_resave(tmp_path):
    import numpy as np

    from talkplay.tokenize.codebook import Codebook
    from talkplay.tokenize.grammar import MODALITIES

    cb = Codebook(["a", "b"], np.array([[0, 1, -1, 0, 1], [1, 0, 0, -1, 0]]),
                  {m: np.eye(2, dtype=np.float32) for m in MODALITIES}, manifest={"seed": 3})
    cb.save(tmp_path / "t")
    back = Codebook.load(tmp_path / "t")
    back.save(tmp_path / "t2")  # a loaded codebook saves again (its manifest is refreshed)
    again = Codebook.load(tmp_path / "t2")
    assert again.manifest["seed"] == 3 and again.k == {m: 2 for m in MODALITIES}
    assert again.text_of("b").startswith("<start_of_music><|playlist-1|>")
    assert (tmp_path / "t2" / "codes.npy").stat().st_mode & 0o044  # readable by others


def test_warm_means_in_a_training_playlist_and_nothing_else():
    from talkplay.data.splits import mark_cold, warm_ids

    tracks = [Track(f"t{i}", f"T{i}") for i in range(5)]
    ds = Dataset(tracks=tracks, playlists=[
        Playlist("train", ["t0", "t1"]), Playlist("valid", ["t1", "t2"], split="valid"),
        Playlist("test", ["t3"], split="test")],
        conversations=[Conversation("c", [Message("user", "x"), Message("music", "t4")])])
    assert warm_ids(ds) == {"t0", "t1"}
    assert mark_cold(ds) == 3
    # Only in valid, only in test, only in a training conversation: all cold (no playlist code).
    assert {t.id for t in ds.tracks if t.cold} == {"t2", "t3", "t4"}
