"""The paper's released conversation format (talkplay-db-v1), both directions.

One JSON record per line: ``{"pid": ..., "cid": ..., "conversations": [{"role", "content"}]}``;
a ``music`` message's content is a track id. Export adds ``split``, ``source`` and ``meta``
(rejections, feedback labels) so that a round trip loses nothing; import accepts records
with or without them. Records are parsed by ``talkplay.data.talkplay_db.parse_record``, the
one parser of this format, so a conversation whose playlist is in the dataset takes that
playlist's split (the record's ``split`` counts only for unknown playlists).
"""

from __future__ import annotations

import json
from pathlib import Path

from talkplay.data.dataset import Dataset
from talkplay.data.errors import Collector, DataError
from talkplay.data.jsonio import iter_jsonl
from talkplay.data.schema import Conversation
from talkplay.data.talkplay_db import parse_record
from talkplay.io import atomic_path


def to_record(conv: Conversation) -> dict:
    """A talkplay-db-style record of one conversation."""
    rec = {"pid": conv.playlist_id, "cid": conv.id,
           "conversations": [{"role": m.role, "content": m.content} for m in conv.messages],
           "split": conv.split}
    if conv.source:
        rec["source"] = conv.source
    if conv.meta:
        rec["meta"] = conv.meta
    return rec


def export_jsonl(ds: Dataset, out: str | Path, splits: list[str] | None = None) -> int:
    """Write the dataset's conversations as JSONL atomically.

    Args:
        ds: the dataset.
        out: output file.
        splits: only these splits (all when None).
    Returns:
        Records written.
    """
    n = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for c in ds.conversations:
            if splits and c.split not in splits:
                continue
            f.write(json.dumps(to_record(c), ensure_ascii=False) + "\n")
            n += 1
    return n


def import_jsonl(ds: Dataset, path: str | Path, *, default_split: str | None = None,
                 skip_invalid: bool = False) -> tuple[list[Conversation], Collector]:
    """Read talkplay-db-style JSONL and validate every record against ``ds``.

    Args:
        ds: the dataset the conversations refer to (tracks and playlists).
        path: the JSONL file.
        default_split: split for records whose playlist is not in the dataset and that
            carry no ``split`` of their own.
        skip_invalid: drop bad records (tallied in the returned Collector) instead of failing.
    Returns:
        (conversations, collector).
    Raises:
        DataError: the first bad record (file, line, field), unless ``skip_invalid``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=str(path))
    known = {t.id for t in ds.tracks}
    split_of = {p.id: p.split for p in ds.playlists}
    col = Collector(skip_invalid)
    out: list[Conversation] = []
    seen: set[str] = set()
    for loc, rec in iter_jsonl(path):
        try:
            if isinstance(rec, DataError):  # the line is not JSON
                raise rec
            conv = parse_record(rec, loc, known, split_of=split_of, default_split=default_split,
                                pid_required=False)
            if conv.id in seen:
                raise loc.at("cid").error(f"duplicate conversation id {conv.id!r}")
        except DataError as e:
            col.error("conversation", e)
            continue
        seen.add(conv.id)
        out.append(conv)
    return out, col
