"""MPD slice import: catalog, popularity, chronological split, errors, CLI, corrupted input."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from corruption import check_contract, corrupt_doc, corrupt_text, dump
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from talkplay.cli import app
from talkplay.data.dataset import read_dataset
from talkplay.data.errors import DataError
from talkplay.data.mpd import find_slices, import_mpd

DAY = 86400
T0 = 1_500_000_000 - 1_500_000_000 % DAY  # midnight, so each playlist below sits on its own day


def track(uri: str, pos: int) -> dict:
    """One playlist entry in the real MPD format."""
    return {"pos": pos, "artist_name": f"Artist {uri}", "track_uri": f"spotify:track:{uri}",
            "artist_uri": f"spotify:artist:{uri}", "track_name": f"Song {uri}",
            "album_uri": f"spotify:album:{uri}", "duration_ms": 1000 * len(uri) + 200_000,
            "album_name": f"Album {uri}"}


def playlist(pid: int, uris: list[str], day: int) -> dict:
    """One MPD playlist (all fields of the real format) modified on day ``day`` after T0."""
    tracks = [track(u, i) for i, u in enumerate(uris)]
    return {"name": f"mix {pid}", "collaborative": "false", "pid": pid,
            "modified_at": T0 + day * DAY + 3600, "num_tracks": len(tracks),
            "num_albums": len(set(uris)), "num_followers": 1, "tracks": tracks,
            "num_edits": 2, "duration_ms": sum(t["duration_ms"] for t in tracks),
            "num_artists": len(set(uris))}


def slice_doc(playlists: list[dict], start: int = 0) -> dict:
    return {"info": {"generated_on": "2017-12-03 08:41:42.057563", "slice": f"{start}-{start + 999}",
                     "version": "v1"}, "playlists": playlists}


def write_slice(folder: Path, playlists: list[dict], start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return dump(folder / f"mpd.slice.{start}-{start + 999}.json", slice_doc(playlists, start))


def ten_playlists() -> list[dict]:
    """Playlist i is modified on day i; track 'a' is in every playlist (twice in pid 0)."""
    return [playlist(i, ["a", f"t{i}", f"t{i + 1}"] + (["a"] if i == 0 else []), day=i)
            for i in range(10)]


def test_import_catalog_popularity_and_chronological_split(tmp_path):
    pls = ten_playlists()
    write_slice(tmp_path / "mpd", pls[:5], start=0)
    write_slice(tmp_path / "mpd", pls[5:], start=1000)
    res = import_mpd([tmp_path / "mpd"], tmp_path / "ds", test_size=2, valid_size=2, seed=3)
    ds = read_dataset(tmp_path / "ds")
    tracks = ds.track_index()
    assert len(ds.tracks) == 12 == len(res.dataset.tracks)  # a, t0..t10
    a = tracks["spotify:track:a"]
    assert (a.title, a.artists, a.album, a.duration_ms) == ("Song a", ["Artist a"], "Album a", 201000)
    assert a.popularity == 6  # in the 6 training playlists; twice in pid 0 counts once
    assert tracks["spotify:track:t5"].popularity == 2
    assert tracks["spotify:track:t9"].popularity == 0  # only in test
    split = {p.id: p.split for p in ds.playlists}
    assert [split[str(i)] for i in range(10)] == ["train"] * 6 + ["valid"] * 2 + ["test"] * 2
    assert ds.playlists[0].track_ids[-1] == "spotify:track:a"  # duplicates and order kept
    # Warm = in a training playlist (pids 0-5: a, t0..t6); valid/test-only tracks are cold.
    assert sorted(t.id for t in ds.tracks if t.cold) == [
        "spotify:track:t10", "spotify:track:t7", "spotify:track:t8", "spotify:track:t9"]
    assert ds.manifest["importer"] == "mpd" and "chronological" in ds.manifest["split_rule"]


def test_test_playlists_never_change_popularity(tmp_path):
    pls = ten_playlists()
    write_slice(tmp_path / "a", pls)
    base = import_mpd([tmp_path / "a"], tmp_path / "ds-a", test_size=2, valid_size=2, seed=3).dataset
    # Same playlists, but the two test playlists (latest days) now hold popular tracks too.
    changed = [dict(p) for p in pls]
    for p in changed[8:]:
        p["tracks"] = p["tracks"] + [track(u, 10 + i) for i, u in enumerate(["a", "t0", "t3"] * 3)]
    write_slice(tmp_path / "b", changed)
    other = import_mpd([tmp_path / "b"], tmp_path / "ds-b", test_size=2, valid_size=2, seed=3).dataset
    assert {p.id: p.split for p in other.playlists} == {p.id: p.split for p in base.playlists}
    pop = {t.id: t.popularity for t in other.tracks}
    assert pop == {t.id: t.popularity for t in base.tracks}
    assert pop["spotify:track:a"] == 6


def test_split_is_seeded_and_samples_latest_day(tmp_path):
    # Six playlists share the latest day: test picks 2 of them, by seed.
    pls = [playlist(i, [f"x{i}", "y"], day=0 if i < 4 else 5) for i in range(10)]
    f = write_slice(tmp_path / "in", pls)
    runs = [import_mpd([f], tmp_path / f"ds{k}", test_size=2, valid_size=0, seed=s)
            for k, s in enumerate([1, 1, 2, 3, 4])]
    tests = [sorted(p.id for p in r.dataset.playlists if p.split == "test") for r in runs]
    assert tests[0] == tests[1]  # same seed, same split
    assert all(len(t) == 2 and all(int(pid) >= 4 for pid in t) for t in tests)
    assert len(set(map(tuple, tests))) > 1  # the seed matters


def test_find_slices_orders_by_pid_and_rejects_missing(tmp_path):
    for start in (2000, 0, 1000):
        write_slice(tmp_path, [playlist(start, ["a"], 0)], start)
    assert [p.name for p in find_slices([tmp_path])] == [
        "mpd.slice.0-999.json", "mpd.slice.1000-1999.json", "mpd.slice.2000-2999.json"]
    with pytest.raises(DataError, match="no such file"):
        find_slices([tmp_path / "nope.json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no mpd.slice"):
        find_slices([tmp_path / "empty"])


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["playlists"][1].update(tracks=[]), "playlists[1].tracks"),
    (lambda d: d["playlists"][2]["tracks"][1].pop("track_uri"), "playlists[2].tracks[1].track_uri"),
    (lambda d: d["playlists"][0].update(modified_at="yesterday"), "playlists[0].modified_at"),
    (lambda d: d["playlists"][3].update(pid=1), "playlists[3].pid"),
    (lambda d: d["playlists"][4]["tracks"][0].update(duration_ms=[1]), "playlists[4].tracks[0].duration_ms"),
    (lambda d: d.pop("playlists"), "playlists"),
    (lambda d: d["playlists"][5].update(modified_at=2**70), "playlists[5].modified_at"),
    (lambda d: d["playlists"][6]["tracks"][2].update(track_name="\ud800"),
     "playlists[6].tracks[2].track_name"),
    (lambda d: d["playlists"].__setitem__(7, "pl"), "playlists[7]"),
])
def test_bad_record_names_file_and_field_and_writes_nothing(tmp_path, mutate, field):
    doc = slice_doc(ten_playlists())
    mutate(doc)
    f = dump(tmp_path / "mpd.slice.0-999.json", doc)
    with pytest.raises(DataError) as err:
        import_mpd([f], tmp_path / "ds", test_size=1, valid_size=0)
    assert str(f) in str(err.value) and err.value.field == field, str(err.value)
    assert not (tmp_path / "ds").exists()


def test_skip_invalid_drops_bad_playlists_and_files(tmp_path):
    doc = slice_doc(ten_playlists())
    doc["playlists"][1]["tracks"] = []
    doc["playlists"][2]["tracks"][0]["track_name"] = 7
    good = dump(tmp_path / "mpd.slice.0-999.json", doc)
    broken = tmp_path / "mpd.slice.1000-1999.json"
    broken.write_text(json.dumps(slice_doc([playlist(1000, ["z"], 3)]))[:-40])
    res = import_mpd([good, broken], tmp_path / "ds", test_size=1, valid_size=1, skip_invalid=True)
    assert len(res.dataset.playlists) == 8 and res.dropped.total == 3
    reasons = " ".join(res.dropped.counts)
    assert "has no tracks" in reasons and "expected string, got integer" in reasons
    assert "file: invalid JSON" in reasons
    assert len(read_dataset(tmp_path / "ds").playlists) == 8


def test_too_many_held_out_is_an_error(tmp_path):
    f = write_slice(tmp_path / "in", ten_playlists())
    with pytest.raises(DataError, match="cannot give 9 test"):
        import_mpd([f], tmp_path / "ds", test_size=9, valid_size=1)
    assert not (tmp_path / "ds").exists()


def test_cli_prints_counts_and_fails_cleanly(tmp_path):
    f = write_slice(tmp_path / "in", ten_playlists())
    runner = CliRunner()
    ok = runner.invoke(app, ["data", "import", "mpd", str(f), "--out", str(tmp_path / "ds"),
                             "--test-size", "2", "--valid-size", "1"])
    assert ok.exit_code == 0, ok.output
    assert "playlist_entries" in ok.output and "wrote" in ok.output and " s" in ok.output
    f.write_text(f.read_text()[:100])
    bad = runner.invoke(app, ["data", "import", "mpd", str(f), "--out", str(tmp_path / "ds2")])
    flat = "".join(bad.output.split())  # rich wraps long lines
    assert bad.exit_code == 2 and "error:" in flat and "invalidJSON" in flat
    assert "Traceback" not in bad.output and not (tmp_path / "ds2").exists()


SMALL = slice_doc([playlist(i, [f"s{i}", f"s{i + 1}"], day=i) for i in range(4)])


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), skip_invalid=st.booleans(), as_text=st.booleans())
def test_corrupted_slices_error_cleanly_or_import(data, skip_invalid, as_text):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "out").mkdir()
        f = tmp / "mpd.slice.0-999.json"
        if as_text:
            how, text = data.draw(corrupt_text(json.dumps(SMALL, indent=1)))
            f.write_text(text)
        else:
            how, doc = data.draw(corrupt_doc(SMALL))
            dump(f, doc)
        out = tmp / "out" / "ds"
        run = lambda: import_mpd([f], out, test_size=1, valid_size=0,  # noqa: E731
                                 skip_invalid=skip_invalid)
        event(check_contract(run, out, [f], skip_invalid=skip_invalid, how=how))


def _split_by_widening_days(playlists, n, rng):
    """The split's first rule (day by day, O(days x playlists)): the reference."""
    day = lambda p: (p.modified_at or 0) // DAY  # noqa: E731
    pool = sorted(playlists, key=day, reverse=True)
    chosen = []
    for d in sorted({day(p) for p in pool}, reverse=True):
        chosen = [p for p in pool if day(p) >= d]
        if len(chosen) >= n:
            break
    return {p.id for p in rng.sample(chosen, min(n, len(chosen)))}


@settings(max_examples=60, deadline=None)
@given(days=st.lists(st.integers(0, 6), min_size=1, max_size=40), n=st.integers(1, 45),
       seed=st.integers(0, 3))
def test_the_split_from_the_date_order_picks_what_widening_day_by_day_picked(days, n, seed):
    import random

    from talkplay.data.dataset import Dataset
    from talkplay.data.schema import Playlist
    from talkplay.data.splits import chronological_split

    pls = [Playlist(id=f"p{i}", track_ids=["a"], modified_at=T0 + d * DAY + i)
           for i, d in enumerate(days)]
    want = _split_by_widening_days(pls, n, random.Random(seed)) if n < len(pls) else None
    if want is None:
        return
    ds = Dataset(tracks=[], playlists=pls)
    chronological_split(ds, test_size=n, seed=seed)
    assert {p.id for p in ds.playlists if p.split == "test"} == want


def test_generated_mpd_slices_are_deterministic_mpd_shaped_and_import_identically(tmp_path):
    from talkplay.data.mpd_synth import write_mpd_slices

    files = write_mpd_slices(tmp_path / "a", 250, slice_size=100, seed=3)
    assert [f.name for f in files] == ["mpd.slice.0-99.json", "mpd.slice.100-199.json",
                                       "mpd.slice.200-249.json"]
    # one slice written alone is byte for byte that slice of the whole run
    alone = write_mpd_slices(tmp_path / "b", 250, slice_size=100, seed=3)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files, alone, strict=True))
    other = write_mpd_slices(tmp_path / "c", 100, slice_size=100, seed=4)[0]
    assert other.read_bytes() != files[0].read_bytes()
    docs = [json.loads(f.read_text()) for f in files]
    pls = [p for d in docs for p in d["playlists"]]
    assert [p["pid"] for p in pls] == list(range(250))
    assert all(5 <= p["num_tracks"] == len(p["tracks"]) <= 250 for p in pls)
    assert set(pls[0]) == set(playlist(0, ["x"], 0)) and set(pls[0]["tracks"][0]) == set(track("x", 0))
    # an interrupted run resumes: complete slices are kept, the rest written
    files[2].unlink()
    before = files[0].stat().st_mtime_ns
    again = write_mpd_slices(tmp_path / "a", 250, slice_size=100, seed=3)
    assert again[2].read_bytes() == alone[2].read_bytes()
    assert files[0].stat().st_mtime_ns == before
    # the importer takes them, and two imports write byte-identical tables
    tables = []
    for out in ("x", "y"):
        res = import_mpd([tmp_path / "a"], tmp_path / out, test_size=20, valid_size=20)
        assert len(res.dataset.playlists) == 250
        manifest = json.loads((tmp_path / out / "manifest.json").read_text())
        folder = tmp_path / out / manifest["tables"]
        tables.append({f.name: f.read_bytes() for f in sorted(folder.iterdir())})
    assert tables[0] == tables[1] and len(tables[0]) >= 2
    popular = max(res.dataset.tracks, key=lambda t: t.popularity)
    assert popular.popularity >= 10  # skewed: hits are in many playlists


def test_synth_mpd_cli_writes_slices_the_mpd_import_takes(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["data", "synth-mpd", "--out", str(tmp_path / "s"), "--playlists",
                              "150", "--slice-size", "100", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "mpd.slice.0-99.json", "mpd.slice.100-149.json"]
    res = runner.invoke(app, ["data", "import", "mpd", str(tmp_path / "s"), "--out",
                              str(tmp_path / "d"), "--test-size", "10", "--valid-size", "10"])
    assert res.exit_code == 0, res.output
    assert len(read_dataset(tmp_path / "d").playlists) == 150


def test_every_playlist_entry_shares_its_tracks_id_string(tmp_path):
    """One string per track id, not one per playlist entry (memory at MPD's size)."""
    from talkplay.data.errors import Collector
    from talkplay.data.mpd import read_mpd
    from talkplay.data.mpd_synth import write_mpd_slices

    files = write_mpd_slices(tmp_path / "s", 120, slice_size=60, seed=2)
    ds = read_mpd(files, Collector(False))
    ids = {t.id: t.id for t in ds.tracks}
    entries = [tid for p in ds.playlists for tid in p.track_ids]
    assert len(entries) > 3 * len(ids)
    assert all(tid is ids[tid] for tid in entries)


def _tables(out: Path) -> dict[str, bytes]:
    folder = out / json.loads((out / "manifest.json").read_text())["tables"]
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


@pytest.mark.slow
def test_an_import_killed_half_way_leaves_a_valid_dataset_and_reruns(tmp_path):
    """SIGKILL at several moments (reading slices, splitting, writing tables): the directory
    holds the earlier dataset, whole, or nothing; the rerun writes what an uninterrupted
    import writes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from talkplay.data.mpd_synth import write_mpd_slices

    slices = tmp_path / "slices"
    write_mpd_slices(slices, 6000, seed=5)
    talkplay = str(Path(sys.executable).parent / "talkplay")
    args = ["data", "import", "mpd", str(slices), "--test-size", "100", "--valid-size", "100"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run([talkplay, *args, "--out", str(reference)], env=env, check=True,
                   capture_output=True)
    earlier = tmp_path / "earlier"  # a dataset already there, from other slices
    write_mpd_slices(tmp_path / "other", 400, seed=9)
    import_mpd([tmp_path / "other"], earlier, test_size=10, valid_size=10)
    before = _tables(earlier)
    for delay in (0.5, 1.5, 2.0, 2.3, 2.6, 3.0, 4.5):  # this machine: writing at about 2-3 s
        for out in (earlier, tmp_path / f"fresh-{delay}"):
            proc = subprocess.Popen([talkplay, *args, "--out", str(out)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if (out / "manifest.json").exists():  # whole: the earlier one, or a finished import
                tables = _tables(out)
                assert tables in (before, _tables(reference)), (delay, out)
                read_dataset(out)
            else:
                assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
            if out == earlier and _tables(out) != before:
                before = _tables(out)  # the import had finished before the kill
    for out in (earlier, tmp_path / "fresh-0.5"):  # killed before anything was written
        subprocess.run([talkplay, *args, "--out", str(out)], env=env, check=True,
                       capture_output=True)
        assert _tables(out) == _tables(reference)
        assert len(list(out.glob("tables-*"))) == 1  # a killed writer's folder is gone
