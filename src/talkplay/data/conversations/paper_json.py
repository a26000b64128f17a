"""The paper's released conversation format (talkplay-db-v1), both directions.

One JSON record per line: ``{"pid": ..., "cid": ..., "conversations": [{"role", "content"}]}``;
a ``music`` message's content is a track id. Export adds ``split``, ``source`` and ``meta``
(rejections, feedback labels) so that a round trip loses nothing; import accepts records
with or without them.
"""

from __future__ import annotations

import json
from pathlib import Path

from talkplay.data.dataset import Dataset
from talkplay.data.errors import Collector, DataError
from talkplay.data.schema import ROLES, SPLITS, Conversation, Message
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


def from_record(rec, *, known: set[str], split_of: dict[str, str], default_split: str | None,
                file: str, line: int) -> Conversation:
    """Validate one record and build the conversation. Raises DataError naming file, line, field."""
    def err(reason: str, fld: str) -> DataError:
        return DataError(reason, file=file, line=line, field=fld)

    if not isinstance(rec, dict):
        raise err("record is not a JSON object", "record")
    cid = rec.get("cid")
    if not isinstance(cid, (str, int)) or cid == "":
        raise err("missing or invalid conversation id", "cid")
    pid = rec.get("pid")
    if pid is not None and not isinstance(pid, (str, int)):
        raise err("playlist id must be a string", "pid")
    pid = None if pid is None else str(pid)
    turns = rec.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise err("missing or empty message list", "conversations")
    msgs = []
    for i, m in enumerate(turns):
        if not isinstance(m, dict):
            raise err("message is not an object", f"conversations[{i}]")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise err(f"unknown role {role!r}", f"conversations[{i}].role")
        if not isinstance(content, str):
            raise err("content must be a string", f"conversations[{i}].content")
        if role == "music" and content not in known:
            raise err(f"unknown track id {content!r}", f"conversations[{i}].content")
        msgs.append(Message(role, content))
    split = rec.get("split") or split_of.get(pid or "") or default_split
    if split not in SPLITS:
        raise err(f"no valid split (got {split!r}; the playlist is not in the dataset: "
                  "pass --split)", "split")
    meta = rec.get("meta") or {}
    if not isinstance(meta, dict):
        raise err("meta must be an object", "meta")
    for idx in meta.get("rejected", []):
        if not isinstance(idx, int) or not 0 <= idx < len(msgs) or msgs[idx].role != "music":
            raise err(f"rejected index {idx!r} is not a music message", "meta.rejected")
    return Conversation(id=str(cid), messages=msgs, split=split, playlist_id=pid,
                        source=rec.get("source") or "talkplay-db", meta=meta)


def import_jsonl(ds: Dataset, path: str | Path, *, default_split: str | None = None,
                 skip_invalid: bool = False) -> tuple[list[Conversation], Collector]:
    """Read talkplay-db-style JSONL and validate every record against ``ds``.

    Args:
        ds: the dataset the conversations refer to (tracks and playlists).
        path: the JSONL file.
        default_split: split for records whose playlist is not in the dataset.
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
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"invalid JSON: {e.msg}", file=str(path), line=n,
                                    field="record") from None
                conv = from_record(rec, known=known, split_of=split_of,
                                   default_split=default_split, file=str(path), line=n)
                if conv.id in seen:
                    raise DataError(f"duplicate conversation id {conv.id!r}", file=str(path),
                                    line=n, field="cid")
            except DataError as e:
                col.error("conversation", e)
                continue
            seen.add(conv.id)
            out.append(conv)
    return out, col
