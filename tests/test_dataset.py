from __future__ import annotations

import pytest

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
