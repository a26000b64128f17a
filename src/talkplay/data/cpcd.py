"""Import the Conversational Playlist Curation Dataset (CPCD, Chaganty et al. 2023).

One JSONL line is a dialog: ``id``, ``turns[{user_query, system_response, search_queries,
search_results, liked_results, disliked_results}]``, ``tracks{id: {track_ids, track_titles,
track_artists, track_release_titles, [track_cluster_ids], [track_canonical_ids]}}`` and
``goal_playlist``. Each dialog becomes a ``Conversation``: per turn the user message, one
``music`` message per liked track, then the assistant message. ``meta`` keeps what the official
CPCD evaluation needs::

    meta["turns"][i] = {"user_index", "assistant_index", "music_indices", "liked", "disliked",
                        "search_queries"}     # message indices into Conversation.messages
    meta["goal_playlist"] = [...]             # the gold set of every turn
    meta["disliked"] = [...]                  # every disliked track id, first-seen order

The goal playlist is also written as a ``Playlist`` whose id is the dialog id.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from talkplay.data.dataset import Dataset
from talkplay.data.errors import Collector, DataError
from talkplay.data.importing import ImportResult, check_out_dir, write_import
from talkplay.data.jsonio import Loc, check_text, expect, id_value, iter_jsonl, str_list
from talkplay.data.jsonio import field as jfield
from talkplay.data.schema import Conversation, Message, Playlist, Track
from talkplay.data.splits import mark_cold

log = logging.getLogger(__name__)


@dataclass
class Dialog:
    """One parsed CPCD dialog: its conversation, goal playlist (None if empty) and tracks."""

    conversation: Conversation
    playlist: Playlist | None
    tracks: dict[str, Track] = field(default_factory=dict)
    loc: Loc | None = None


def _text(raw: dict, key: str, loc: Loc, *, required: bool) -> str | None:
    """A text field that some CPCD versions write as a one-element list."""
    values = str_list(raw, key, loc, required=required)
    return next((v for v in values if v), values[0] if values else None)


def parse_track(tid: str, raw: object, loc: Loc) -> Track:
    """Check one entry of a dialog's ``tracks`` dict (either schema version). Raises DataError."""
    raw = expect(raw, dict, loc)
    if "track_ids" in raw and tid not in str_list(raw, "track_ids", loc):
        raise loc.at("track_ids").error(f"does not match its key {tid!r}")
    cluster = jfield(raw, "track_cluster_ids", object, loc, required=False)
    if cluster is not None:
        if isinstance(cluster, list) and len(cluster) == 1:
            cluster = cluster[0]
        if isinstance(cluster, bool) or not isinstance(cluster, str | int):
            raise loc.at("track_cluster_ids").error("expected a string or integer cluster id")
        cluster = str(cluster)
    return Track(id=tid, title=_text(raw, "track_titles", loc, required=True) or "",
                 artists=str_list(raw, "track_artists", loc, required=False),
                 album=_text(raw, "track_release_titles", loc, required=False),
                 cluster_id=cluster)


def _refs(raw: dict, key: str, loc: Loc, tracks: dict[str, Track]) -> list[str]:
    """Track ids of ``raw[key]``; an id without an entry in the dialog's ``tracks`` (official
    CPCD files have such goal tracks) becomes an id-only track: empty title, no artists, never
    invented metadata. It stays a gold answer, as in CPCD's own evaluation."""
    ids = str_list(raw, key, loc)
    for j, tid in enumerate(ids):
        check_text(tid, loc.at(key).at(j))
        if tid not in tracks:
            tracks[tid] = Track(id=tid, title="")
    return ids


def is_id_only(track: Track) -> bool:
    """True for a track known by its id alone (no title, artists or album)."""
    return not (track.title or track.artists or track.album)


def parse_dialog(raw: object, loc: Loc) -> Dialog:
    """Turn one CPCD dialog record into a conversation, goal playlist and tracks.

    Raises:
        DataError: a required field is missing or mistyped. A liked / disliked / goal track
            missing from the dialog's ``tracks`` becomes an id-only track (``_refs``).
    """
    raw = expect(raw, dict, loc)
    did = id_value(raw, "id", loc)
    tracks_raw = jfield(raw, "tracks", dict, loc)
    tracks = {check_text(tid, loc.at("tracks").key(tid)): parse_track(tid, t, loc.at("tracks").key(tid))
              for tid, t in tracks_raw.items()}
    turns = jfield(raw, "turns", list, loc)
    if not turns:
        raise loc.at("turns").error(f"dialog {did} has no turns")
    messages: list[Message] = []
    turn_meta: list[dict] = []
    disliked_all: dict[str, None] = {}
    for i, turn in enumerate(turns):
        tloc = loc.at("turns").at(i)
        turn = expect(turn, dict, tloc)
        user = jfield(turn, "user_query", str, tloc)
        reply = jfield(turn, "system_response", str, tloc)
        liked = _refs(turn, "liked_results", tloc, tracks)
        disliked = _refs(turn, "disliked_results", tloc, tracks)
        queries = str_list(turn, "search_queries", tloc, required=False)
        user_index = len(messages)
        messages.append(Message("user", user))
        messages.extend(Message("music", tid) for tid in liked)
        messages.append(Message("assistant", reply))
        disliked_all.update(dict.fromkeys(disliked))
        turn_meta.append({"user_index": user_index, "assistant_index": len(messages) - 1,
                          "music_indices": list(range(user_index + 1, len(messages) - 1)),
                          "liked": liked, "disliked": disliked, "search_queries": queries})
    goal = _refs(raw, "goal_playlist", loc, tracks)
    playlist = Playlist(id=did, track_ids=goal) if goal else None
    meta = {"dialog_id": did, "turns": turn_meta, "goal_playlist": goal,
            "disliked": list(disliked_all)}
    conv = Conversation(id=did, messages=messages, playlist_id=did if goal else None,
                        source="cpcd", meta=meta)
    return Dialog(conv, playlist, tracks, loc)


def read_cpcd(path: str | Path, collector: Collector) -> list[Dialog]:
    """Parse a CPCD JSONL file; bad lines raise or (``skip_invalid``) are dropped and counted."""
    dialogs: list[Dialog] = []
    seen: dict[str, int] = {}
    for loc, raw in iter_jsonl(path):
        try:
            if isinstance(raw, DataError):
                raise raw
            d = parse_dialog(raw, loc)
            if d.conversation.id in seen:
                raise loc.at("id").error(f"duplicate dialog id {d.conversation.id!r} "
                                         f"(first on line {seen[d.conversation.id]})")
        except DataError as e:
            collector.error("dialog", e)
            continue
        seen[d.conversation.id] = loc.line or 0
        dialogs.append(d)
    return dialogs


def read_track_corpus(path: str | Path, collector: Collector) -> dict[str, Track]:
    """A CPCD track corpus (e.g. ``cpcd_v1.tracks.jsonl``): one track per line, with the fields
    of a dialog's ``tracks`` entries (``track_titles``, ``track_artists``,
    ``track_release_titles``, optional cluster ids) and its id in ``track_id``, ``id`` or
    ``track_ids``. Bad lines raise or (``skip_invalid``) are dropped and counted."""
    out: dict[str, Track] = {}
    for loc, raw in iter_jsonl(path):
        try:
            if isinstance(raw, DataError):
                raise raw
            raw = expect(raw, dict, loc)
            if "track_id" in raw or "id" in raw:
                tid = id_value(raw, "track_id" if "track_id" in raw else "id", loc)
            else:
                ids = str_list(raw, "track_ids", loc)
                if not ids:
                    raise loc.at("track_ids").error("empty: the track has no id")
                tid = ids[0]
            if tid in out:
                raise loc.at("track_id").error(f"duplicate track id {tid!r}")
            out[tid] = parse_track(tid, raw, loc)
        except DataError as e:
            collector.error("track", e)
    return out


def _assign_splits(dialogs: list[Dialog], *, test_fraction: float, valid_fraction: float,
                   seed: int) -> None:
    """Hold out seeded random shares of the (train-file) dialogs as test and valid."""
    n = len(dialogs)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test, n_valid = round(test_fraction * n), round(valid_fraction * n)
    for rank, i in enumerate(order):
        split = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
        dialogs[i].conversation.split = split


def _merge_catalog(dialogs: list[Dialog], notes: list[str]) -> list[Track]:
    """Join the dialogs' track dicts into one catalog (cold flags are set later by
    ``mark_cold``). The first dialog's metadata wins when two dialogs disagree (counted in notes)."""
    catalog: dict[str, Track] = {}
    conflicts = 0
    for d in dialogs:
        for tid, t in d.tracks.items():
            if tid not in catalog or (is_id_only(catalog[tid]) and not is_id_only(t)):
                catalog[tid] = t  # metadata from any dialog beats an id-only entry
            elif catalog[tid] != t and not is_id_only(t):
                conflicts += 1
    id_only = sum(is_id_only(t) for t in catalog.values())
    if id_only:
        notes.append(f"{id_only} tracks are named by id only (no metadata in any dialog); "
                     "kept as id-only catalog tracks, still gold")
    if conflicts:
        notes.append(f"{conflicts} track entries disagree with the metadata first seen for "
                     "their id (first kept)")
    return list(catalog.values())


def import_cpcd(train: str | Path, out: str | Path, *, test: str | Path | None = None,
                test_fraction: float = 0.0, valid_fraction: float = 0.0, seed: int = 0,
                skip_invalid: bool = False, tracks: str | Path | None = None) -> ImportResult:
    """Import CPCD dialog files into one dataset (shared catalog, one conversation per dialog).

    Args:
        train: JSONL dialogs for train (and, via the fractions, valid/test).
        out: dataset directory to write.
        test: optional JSONL dialogs that are all test.
        test_fraction: share of ``train`` dialogs held out as test (only without ``test``).
        valid_fraction: share of ``train`` dialogs held out as valid.
        seed: seed of the random hold-out.
        skip_invalid: drop bad dialogs (counted) instead of stopping at the first one.
        tracks: optional track corpus (``read_track_corpus``): its tracks join the catalog, so
            the systems rank the whole corpus, not only the dialogs' own track lists (which
            are mostly their goal tracks). Its metadata fills tracks the dialogs name by id only.
    Returns:
        The written dataset and what was dropped.
    Raises:
        DataError: bad input (without ``skip_invalid``), bad fractions, a dialog id in both
            files, or no valid dialogs. Nothing is written then.
    """
    out = check_out_dir(out)
    if test is not None and test_fraction:
        raise DataError("give --test or --test-fraction, not both", file=str(train),
                        field="test_fraction")
    if not (0 <= test_fraction < 1 and 0 <= valid_fraction < 1
            and test_fraction + valid_fraction < 1):
        raise DataError("fractions must be in [0, 1) and sum to less than 1", file=str(train),
                        field="test_fraction/valid_fraction")
    collector = Collector(skip_invalid)
    dialogs = read_cpcd(train, collector)
    if not dialogs:
        raise DataError("no valid dialogs to import", file=str(train))
    _assign_splits(dialogs, test_fraction=test_fraction, valid_fraction=valid_fraction, seed=seed)
    if test is not None:
        train_ids = {d.conversation.id: d.loc for d in dialogs}
        for d in read_cpcd(test, collector):
            if d.conversation.id in train_ids:
                first = train_ids[d.conversation.id]
                collector.error("dialog", d.loc.at("id").error(
                    f"dialog id {d.conversation.id!r} is also in {first.file}:{first.line}"))
                continue
            d.conversation.split = "test"
            dialogs.append(d)
    notes: list[str] = []
    empty = sum(d.playlist is None for d in dialogs)
    if empty:
        notes.append(f"{empty} dialogs have an empty goal playlist (conversation kept, no playlist)")
    catalog = _merge_catalog(dialogs, notes)
    if tracks is not None:
        corpus = read_track_corpus(tracks, collector)
        known = {t.id: i for i, t in enumerate(catalog)}
        for tid, t in corpus.items():
            if tid not in known:
                catalog.append(t)
            elif is_id_only(catalog[known[tid]]):
                catalog[known[tid]] = t
        notes.append(f"catalog: {len(catalog)} tracks ({len(corpus)} in {tracks}, "
                     f"{len(catalog) - len(corpus)} only in the dialogs)")
    ds = Dataset(tracks=catalog, conversations=[d.conversation for d in dialogs])
    for d in dialogs:
        if d.playlist is not None:
            d.playlist.split = d.conversation.split
            ds.playlists.append(d.playlist)
    mark_cold(ds)  # warm = in a training goal playlist (a liked track of a train dialog)
    rule = (f"cpcd: {'dialogs of ' + str(test) + ' are test; ' if test else ''}"
            f"seeded random hold-out of {test_fraction:g} test and {valid_fraction:g} valid "
            f"of {train} (seed={seed}); goal playlists follow their dialog; tracks in no "
            "training goal playlist are cold")
    extra = {"importer": "cpcd",
             "inputs": [str(train)] + ([str(test)] if test else []) + ([str(tracks)] if tracks else []),
             "catalog": ("track corpus " + str(tracks) + " + the dialogs' tracks" if tracks
                         else "the union of the dialogs' own track lists"),
             "options": {"test_fraction": test_fraction, "valid_fraction": valid_fraction,
                         "seed": seed, "skip_invalid": skip_invalid},
             "dropped": dict(collector.dropped.counts)}
    source = f"cpcd:{train}" + (f"+{test}" if test else "")
    path = write_import(out, ds, source=source, split_rule=rule, extra=extra)
    return ImportResult(dataset=ds, path=path, dropped=collector.dropped, notes=notes)
