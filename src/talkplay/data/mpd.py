"""Import the Million Playlist Dataset (MPD) slice files into a TalkPlay dataset.

A slice file is ``{"info": {...}, "playlists": [{"pid", "name", "modified_at", "tracks":
[{"pos", "track_uri", "track_name", "artist_name", "album_name", "duration_ms", ...}]}]}``.
Slices are parsed one file at a time (a full MPD is 1,000 files of ~30 MB); only the catalog
and the playlists' track-id lists are kept. The track id is the ``track_uri``; popularity is
the number of *training* playlists that contain the track (counted after the split). Splits
follow the paper: test (and valid) playlists are sampled from the latest ``modified_at`` dates
(``chronological_split``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from talkplay.data.dataset import Dataset
from talkplay.data.errors import Collector, DataError
from talkplay.data.importing import ImportResult, check_out_dir, write_import
from talkplay.data.jsonio import Loc, expect, field, id_value, read_json
from talkplay.data.schema import Playlist, Track
from talkplay.data.splits import chronological_split, training_popularity

log = logging.getLogger(__name__)
SLICE_GLOB = "mpd.slice.*.json"
# (uri, title, artist, album, duration_ms) of one playlist entry, before it joins the catalog.
_Entry = tuple[str, str, str, str | None, int | None]


def _slice_key(path: Path) -> tuple[int, str]:
    m = re.search(r"slice\.(\d+)-", path.name)
    return (int(m.group(1)) if m else -1, path.name)


def find_slices(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories to their ``mpd.slice.*.json`` files (in pid order); keep files as given.

    Raises:
        DataError: a path does not exist, or a directory holds no slice files.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob(SLICE_GLOB), key=_slice_key)
            if not found:
                raise DataError(f"no {SLICE_GLOB} files in this directory", file=str(p))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError("no such file or directory", file=str(p))
    if not files:
        raise DataError("no MPD slice files given", file="(none)")
    return list(dict.fromkeys(files))


def parse_playlist(raw: object, loc: Loc) -> tuple[Playlist, list[_Entry]]:
    """Check one MPD playlist record and return it with its entries' metadata.

    Required: ``pid``, ``modified_at`` (Unix seconds) and a non-empty ``tracks`` list whose
    entries have ``track_uri``, ``track_name`` and ``artist_name``. Raises DataError.
    """
    raw = expect(raw, dict, loc)
    pid = id_value(raw, "pid", loc)
    name = field(raw, "name", str, loc, required=False)
    modified_at = field(raw, "modified_at", int, loc)
    items = field(raw, "tracks", list, loc)
    if not items:
        raise loc.at("tracks").error(f"playlist {pid} has no tracks")
    entries = [_fast_entry(item) or _checked_entry(item, loc.at("tracks").at(j))
               for j, item in enumerate(items)]
    playlist = Playlist(id=pid, track_ids=[e[0] for e in entries], name=name,
                        modified_at=modified_at)
    return playlist, entries


def _fast_entry(item: object) -> _Entry | None:
    """The common case of a well-formed entry, checked without building locations (a slice
    has ~67k entries); None sends the entry through ``_checked_entry``, which defines the rules
    and names the bad field."""
    if type(item) is not dict:
        return None
    get = item.get
    uri, title, artist = get("track_uri"), get("track_name"), get("artist_name")
    album, duration = get("album_name"), get("duration_ms")
    if (type(uri) is str and type(title) is str and type(artist) is str
            and (album is None or type(album) is str)
            and (duration is None or (type(duration) is int and abs(duration) < 2**62))
            and uri.strip() and (uri + title + artist + (album or "")).isascii()):
        return uri, title, artist, album, duration
    return None


def _checked_entry(item: object, loc: Loc) -> _Entry:
    item = expect(item, dict, loc)
    uri = field(item, "track_uri", str, loc)
    if not uri.strip():
        raise loc.at("track_uri").error("empty track id")
    return (uri, field(item, "track_name", str, loc), field(item, "artist_name", str, loc),
            field(item, "album_name", str, loc, required=False),
            field(item, "duration_ms", int, loc, required=False))


def _playlists_of(doc: object, loc: Loc) -> list:
    doc = expect(doc, dict, loc)
    return field(doc, "playlists", list, loc)


def read_mpd(files: list[Path], collector: Collector,
             on_file: Callable[[Path, int], None] | None = None) -> Dataset:
    """Parse slice files one at a time into a dataset with every playlist in ``train``.

    Args:
        files: slice files (see ``find_slices``).
        collector: raises on the first bad record, or records it under ``--skip-invalid``
            (a bad playlist is dropped whole; an unreadable file is dropped whole).
        on_file: called after each file with the file and its number of playlists read.
    Returns:
        The dataset (popularity unset: ``import_mpd`` counts it on training playlists after
        the split).
    """
    tracks: dict[str, Track] = {}
    playlists: list[Playlist] = []
    first_file: dict[str, int] = {}  # pid -> index of the file it came from
    for k, path in enumerate(files):
        loc = Loc(str(path))
        try:
            items = _playlists_of(read_json(path), loc)
        except DataError as e:
            collector.error("file", e)
            continue
        before = len(playlists)
        for i, raw in enumerate(items):
            ploc = loc.at("playlists").at(i)
            try:
                playlist, entries = parse_playlist(raw, ploc)
                if playlist.id in first_file:
                    raise ploc.at("pid").error(f"duplicate pid {playlist.id} (first seen in "
                                               f"{files[first_file[playlist.id]]})")
            except DataError as e:
                collector.error("playlist", e)
                continue
            first_file[playlist.id] = k
            for uri, title, artist, album, duration in entries:
                if uri not in tracks:  # the first occurrence's metadata names the track
                    tracks[uri] = Track(id=uri, title=title, artists=[artist] if artist else [],
                                        album=album, duration_ms=duration)
            # One string object per track id, not one per entry (json.loads makes a new string
            # for every occurrence: 66M of them at MPD's size, several GB).
            playlist.track_ids = [tracks[uri].id for uri in playlist.track_ids]
            playlists.append(playlist)
        if on_file:
            on_file(path, len(playlists) - before)
    return Dataset(tracks=list(tracks.values()), playlists=playlists)


def import_mpd(paths: Iterable[str | Path], out: str | Path, *, test_size: int = 1000,
               valid_size: int = 1000, seed: int = 0, skip_invalid: bool = False,
               on_file: Callable[[Path, int], None] | None = None) -> ImportResult:
    """Import MPD slices, split them chronologically and write a dataset directory.

    Args:
        paths: slice files and/or directories holding ``mpd.slice.*.json``.
        out: dataset directory to write.
        test_size: playlists sampled from the latest ``modified_at`` dates for test.
        valid_size: playlists sampled from the next latest dates for valid.
        seed: sampling seed.
        skip_invalid: drop bad playlists/files (counted in ``ImportResult.dropped``) instead of
            stopping at the first one.
        on_file: progress callback, see ``read_mpd``.
    Returns:
        The written dataset and what was dropped.
    Raises:
        DataError: bad input (without ``skip_invalid``), nothing valid left, or too few
            playlists for the requested test and valid sizes. Nothing is written then.
    """
    out = check_out_dir(out)
    files = find_slices(paths)
    collector = Collector(skip_invalid)
    ds = read_mpd(files, collector, on_file)
    where = str(files[0]) if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more files)"
    if not ds.playlists:
        raise DataError("no valid playlists to import", file=where)
    if test_size < 0 or valid_size < 0:
        raise DataError("test and valid sizes must be >= 0", file=where)
    if test_size + valid_size >= len(ds.playlists):
        raise DataError(f"{len(ds.playlists)} playlists cannot give {test_size} test + "
                        f"{valid_size} valid and leave any for train; lower --test-size / "
                        "--valid-size", file=where)
    rule = chronological_split(ds, test_size=test_size, valid_size=valid_size, seed=seed)
    training_popularity(ds)  # after the split: valid/test playlists never count
    rule += "; popularity = number of training playlists with the track"
    extra = {"importer": "mpd", "inputs": [str(f) for f in files],
             "options": {"test_size": test_size, "valid_size": valid_size, "seed": seed,
                         "skip_invalid": skip_invalid},
             "dropped": dict(collector.dropped.counts)}
    path = write_import(out, ds, source=f"mpd:{where}", split_rule=rule, extra=extra)
    return ImportResult(dataset=ds, path=path, dropped=collector.dropped)
