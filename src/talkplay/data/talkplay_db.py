"""Import conversations in the released TalkPlay format (talkplay-db-v1) onto a catalog.

A record is ``{"pid": ..., "cid": ..., "conversations": [{"role": ..., "content": ...}]}``;
a ``music`` message's content is a track id. Files are JSON (a list of records, or one
record) or JSONL (one record per line). The catalog and playlists come from an existing
TalkPlay dataset directory (e.g. an MPD import); every conversation takes the split of its
playlist (``pid``) when that playlist is in the catalog dataset, else the record's own
``split`` (as ``talkplay data export-json`` writes it), else the ``split`` option.
``parse_record`` is the one parser of this format: ``talkplay data import-json``
(``talkplay.data.conversations.paper_json``) uses it too.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from talkplay.data.dataset import Dataset, read_dataset
from talkplay.data.errors import Collector, DataError
from talkplay.data.importing import ImportResult, check_out_dir, write_import
from talkplay.data.jsonio import Loc, expect, field, id_value, is_jsonl, iter_jsonl, read_json
from talkplay.data.schema import ROLES, SPLITS, Conversation, Message
from talkplay.data.splits import mark_cold

log = logging.getLogger(__name__)


def iter_records(path: str | Path) -> Iterator[tuple[Loc, Any]]:
    """Yield ``(loc, record)`` from a JSON or JSONL file; an unparsable JSONL line yields
    ``(loc, DataError)``. Raises DataError when a JSON file is not a record or a list of them."""
    if is_jsonl(path):
        yield from iter_jsonl(path)
        return
    doc = read_json(path)
    loc = Loc(str(path))
    if isinstance(doc, dict) and "conversations" in doc:
        yield loc, doc
        return
    for i, raw in enumerate(expect(doc, list, loc)):
        yield loc.at(i), raw


def parse_record(raw: object, loc: Loc, track_ids: Container[str], *,
                 split_of: Mapping[str, str], default_split: str | None = None,
                 pid_required: bool = True) -> Conversation:
    """Check one talkplay-db record and return its conversation, split assigned.

    The split rule: a conversation takes its playlist's split when ``pid`` is a playlist of
    the dataset (so a conversation can never leak a test playlist into training); otherwise
    the record's own ``split`` (written by ``export-json``), otherwise ``default_split``.

    Args:
        raw: the parsed JSON record: ``{"pid", "cid", "conversations": [{"role", "content"}]}``
            plus the optional ``split``, ``source`` and ``meta`` that ``export-json`` writes.
        loc: where the record sits (file, line, JSON path), for errors.
        track_ids: the catalog's track ids; every music message must be one.
        split_of: playlist id -> split of the dataset's playlists.
        default_split: split for a conversation whose playlist is unknown and whose record
            has no split; None makes that an error.
        pid_required: False accepts a missing or null ``pid`` (conversations without a
            playlist, e.g. from CPCD, are exported that way).
    Returns:
        The conversation (``source`` "talkplay-db" unless the record names one).
    Raises:
        DataError: missing or mistyped ``pid`` / ``cid`` / ``conversations`` / ``role`` /
            ``content`` / ``split`` / ``meta``, an unknown role or split, no messages, a music
            message whose track id is not in the catalog, a ``meta.rejected`` index that is not
            a music message, or no way to assign a split.
    """
    raw = expect(raw, dict, loc)
    pid = (id_value(raw, "pid", loc) if pid_required or raw.get("pid") is not None else None)
    cid = id_value(raw, "cid", loc)
    items = field(raw, "conversations", list, loc)
    if not items:
        raise loc.at("conversations").error(f"conversation {cid} has no messages")
    messages: list[Message] = []
    for j, item in enumerate(items):
        mloc = loc.at("conversations").at(j)
        item = expect(item, dict, mloc)
        role = field(item, "role", str, mloc)
        if role not in ROLES:
            raise mloc.at("role").error(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
        content = field(item, "content", str, mloc)
        if role == "music" and content not in track_ids:
            raise mloc.at("content").error(f"track {content!r} is not in the catalog")
        messages.append(Message(role, content))
    meta = field(raw, "meta", dict, loc, required=False, default={})
    for k, idx in enumerate(field(meta, "rejected", list, loc.at("meta"), required=False,
                                  default=[])):
        if (isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < len(messages)
                or messages[idx].role != "music"):
            raise loc.at("meta").at("rejected").at(k).error(
                f"rejected index {idx!r} is not a music message")
    source = field(raw, "source", str, loc, required=False, default="talkplay-db")
    if pid is not None and pid in split_of:
        split = split_of[pid]
    else:
        split = field(raw, "split", str, loc, required=False, default=default_split)
        if split is None:
            raise loc.at("pid").error(f"playlist {pid!r} is not in the catalog dataset, so "
                                      "its split is unknown; pass --default-split")
        if split not in SPLITS:
            where = loc.at("split") if raw.get("split") is not None else loc
            raise where.error(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    return Conversation(id=cid, messages=messages, split=split, playlist_id=pid, source=source,
                        meta=meta)


def import_talkplay(files: Iterable[str | Path], catalog: str | Path, out: str | Path, *,
                    split: str | None = None, skip_invalid: bool = False) -> ImportResult:
    """Join talkplay-db conversations to a catalog dataset and write the result as a new dataset.

    Args:
        files: JSON / JSONL conversation files.
        catalog: an existing TalkPlay dataset directory (tracks, playlists, conversations);
            its records are all carried over.
        out: dataset directory to write (may be ``catalog`` itself to add the conversations).
        split: split for conversations whose ``pid`` is not a playlist of the catalog; None
            makes such a conversation an error.
        skip_invalid: drop bad records (counted) instead of stopping at the first one.
    Returns:
        The written dataset and what was dropped.
    Raises:
        DataError: bad input (without ``skip_invalid``), a bad catalog, or nothing to import.
    """
    out = check_out_dir(out)
    files = [Path(f) for f in files]
    if not files:
        raise DataError("no conversation files given", file="(none)")
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})",
                        file=str(files[0]), field="split")
    base: Dataset = read_dataset(catalog)
    tracks = base.track_index()
    playlist_split = {p.id: p.split for p in base.playlists}
    seen: dict[str, str] = {c.id: f"{catalog} (catalog dataset)" for c in base.conversations}
    collector = Collector(skip_invalid)
    new: list[Conversation] = []
    for path in files:
        try:
            for loc, raw in iter_records(path):
                try:
                    if isinstance(raw, DataError):
                        raise raw
                    conv = parse_record(raw, loc, tracks, split_of=playlist_split,
                                        default_split=split)
                    if conv.id in seen:
                        raise loc.at("cid").error(f"duplicate conversation id {conv.id!r} "
                                                  f"(first in {seen[conv.id]})")
                except DataError as e:
                    collector.error("conversation", e)
                    continue
                seen[conv.id] = f"{loc.file}:{loc.line}" if loc.line else f"{loc.file} {loc.path}"
                new.append(conv)
        except DataError as e:  # the whole file is unreadable
            collector.error("file", e)
    if not new:
        raise DataError("no valid conversations to import", file=str(files[0]))
    ds = Dataset(tracks=base.tracks, playlists=base.playlists,
                 conversations=base.conversations + new)
    mark_cold(ds)
    joined = sum(c.playlist_id in playlist_split for c in new)
    rule = (f"{base.manifest.get('split_rule', '')}; talkplay-db conversations take the split of "
            f"their playlist ({joined} of {len(new)}), others '{split}'; cold recomputed")
    extra = {"importer": "talkplay-db", "inputs": [str(f) for f in files],
             "catalog": str(catalog), "catalog_source": base.manifest.get("source"),
             "options": {"split": split, "skip_invalid": skip_invalid},
             "dropped": dict(collector.dropped.counts)}
    source = f"talkplay-db:{files[0]}" + (f" (+{len(files) - 1} more)" if len(files) > 1 else "")
    path = write_import(out, ds, source=source, split_rule=rule, extra=extra)
    notes = [f"{joined} of {len(new)} conversations joined a catalog playlist"]
    return ImportResult(dataset=ds, path=path, dropped=collector.dropped, notes=notes)
