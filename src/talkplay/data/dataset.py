"""The on-disk dataset: a directory with ``manifest.json`` and three Parquet tables.

```
DIR/manifest.json                       kind=dataset, format_version, source, counts,
                                        split rule, "tables": "tables-<uuid>"
DIR/tables-<uuid>/tracks.parquet        one row per track (schema: TRACK_SCHEMA)
DIR/tables-<uuid>/playlists.parquet     one row per playlist, ordered track ids, split
DIR/tables-<uuid>/conversations.parquet one row per conversation, ordered messages, split
```

Later stages write their own sub-directories beside the tables (``embeddings/``,
``tokenizer/``), each with its own manifest; a rewrite never touches them. Writing is
atomic: the three tables go into a fresh, uniquely named directory and the manifest,
renamed into place last, names it. A reader follows the manifest, so it sees either the
old tables or the new ones, never a mix; a crash leaves at most an unreferenced directory.
Datasets written before this layout (tables directly in ``DIR``, no "tables" key) still read.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from talkplay.data.errors import DataError
from talkplay.data.schema import ROLES, SPLITS, Conversation, Message, Playlist, Track
from talkplay.io import MANIFEST, make_manifest, read_json, write_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
TABLES = ("tracks", "playlists", "conversations")
TABLES_PREFIX = "tables-"

TRACK_SCHEMA = pa.schema([
    ("id", pa.string()), ("title", pa.string()), ("artists", pa.list_(pa.string())),
    ("album", pa.string()), ("release_date", pa.string()), ("popularity", pa.float64()),
    ("tags", pa.list_(pa.string())), ("pseudo_tags", pa.list_(pa.string())),
    ("lyrics", pa.string()), ("audio", pa.string()), ("duration_ms", pa.int64()),
    ("tempo", pa.float64()), ("key", pa.string()), ("cluster_id", pa.string()),
    ("cold", pa.bool_()),
])
PLAYLIST_SCHEMA = pa.schema([
    ("id", pa.string()), ("name", pa.string()), ("created_at", pa.int64()),
    ("modified_at", pa.int64()), ("track_ids", pa.list_(pa.string())), ("split", pa.string()),
])
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
CONVERSATION_SCHEMA = pa.schema([
    ("id", pa.string()), ("split", pa.string()), ("playlist_id", pa.string()),
    ("source", pa.string()), ("messages", pa.list_(MESSAGE_TYPE)), ("meta", pa.string()),
])
_BATCH = 50_000


@dataclass
class Dataset:
    """A catalog with its playlists and conversations, in memory."""

    tracks: list[Track] = field(default_factory=list)
    playlists: list[Playlist] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    root: Path | None = None

    def track_index(self) -> dict[str, Track]:
        return {t.id: t for t in self.tracks}

    def counts(self) -> dict:
        return {
            "tracks": len(self.tracks),
            "cold_tracks": sum(t.cold for t in self.tracks),
            "playlists": dict(Counter(p.split for p in self.playlists)),
            "conversations": dict(Counter(c.split for c in self.conversations)),
            "playlist_entries": sum(len(p.track_ids) for p in self.playlists),
            "music_turns": sum(len(c.music_ids()) for c in self.conversations),
        }


def validate(ds: Dataset, *, where: str = "dataset") -> None:
    """Check ids are unique, references resolve, roles and splits are known. Raises DataError."""
    seen: set[str] = set()
    for i, t in enumerate(ds.tracks):
        if not t.id:
            raise DataError("empty track id", file=where, line=i, field="tracks.id")
        if t.id in seen:
            raise DataError(f"duplicate track id {t.id!r}", file=where, line=i, field="tracks.id")
        seen.add(t.id)
    pids: set[str] = set()
    for i, p in enumerate(ds.playlists):
        if p.id in pids:
            raise DataError(f"duplicate playlist id {p.id!r}", file=where, line=i, field="playlists.id")
        pids.add(p.id)
        if p.split not in SPLITS:
            raise DataError(f"unknown split {p.split!r}", file=where, line=i, field="playlists.split")
        if not p.track_ids:
            raise DataError(f"playlist {p.id!r} is empty", file=where, line=i, field="playlists.track_ids")
        for tid in p.track_ids:
            if tid not in seen:
                raise DataError(f"playlist {p.id!r} references unknown track {tid!r}",
                                file=where, line=i, field="playlists.track_ids")
    cids: set[str] = set()
    for i, c in enumerate(ds.conversations):
        if c.id in cids:
            raise DataError(f"duplicate conversation id {c.id!r}", file=where, line=i,
                            field="conversations.id")
        cids.add(c.id)
        if c.split not in SPLITS:
            raise DataError(f"unknown split {c.split!r}", file=where, line=i, field="conversations.split")
        for m in c.messages:
            if m.role not in ROLES:
                raise DataError(f"unknown role {m.role!r}", file=where, line=i,
                                field="conversations.messages.role")
            if m.role == "music" and m.content not in seen:
                raise DataError(f"conversation {c.id!r} references unknown track {m.content!r}",
                                file=where, line=i, field="conversations.messages.content")


def _track_row(t: Track) -> dict:
    return {k: getattr(t, k) for k in TRACK_SCHEMA.names}


def _playlist_row(p: Playlist) -> dict:
    return {k: getattr(p, k) for k in PLAYLIST_SCHEMA.names}


def _conversation_row(c: Conversation) -> dict:
    return {
        "id": c.id, "split": c.split, "playlist_id": c.playlist_id, "source": c.source,
        "messages": [{"role": m.role, "content": m.content} for m in c.messages],
        "meta": json.dumps(c.meta) if c.meta else None,
    }


def _write_table(path: Path, schema: pa.Schema, rows: Iterable[dict]) -> int:
    """Stream rows to Parquet in batches; returns the row count."""
    n = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        batch: list[dict] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= _BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
                batch = []
        if batch or n == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n


def write_dataset(path: str | Path, ds: Dataset, *, source: str, split_rule: str,
                  extra: dict | None = None, check: bool = True) -> Path:
    """Write ``ds`` to ``path`` atomically; sub-directories already in ``path`` are kept.

    Args:
        path: dataset directory (created if needed).
        ds: the records.
        source: what the data came from ("world(seed=0)", "cpcd:FILE", ...).
        split_rule: a sentence saying how train/valid/test were assigned.
        extra: more manifest fields (e.g. the generator config); a "tables" entry (copied
            from an old manifest) is ignored, the writer sets it.
        check: run ``validate`` first.
    Returns:
        The dataset directory.
    """
    path = Path(path)
    if check:
        validate(ds, where=str(path))
    path.mkdir(parents=True, exist_ok=True)
    # A fresh directory per write: concurrent writers never share a temporary name, and
    # the tables a reader sees change only when the manifest (renamed last) names new ones.
    tables = f"{TABLES_PREFIX}{uuid.uuid4().hex}"
    tdir = path / tables
    tdir.mkdir()
    try:
        for name, schema, rows in (
            ("tracks", TRACK_SCHEMA, map(_track_row, ds.tracks)),
            ("playlists", PLAYLIST_SCHEMA, map(_playlist_row, ds.playlists)),
            ("conversations", CONVERSATION_SCHEMA, map(_conversation_row, ds.conversations)),
        ):
            _write_table(tdir / f"{name}.parquet", schema, rows)
    except BaseException:
        shutil.rmtree(tdir, ignore_errors=True)
        raise
    manifest = make_manifest("dataset", FORMAT_VERSION, source=source, split_rule=split_rule,
                             counts=ds.counts(), tables=tables,
                             **{k: v for k, v in (extra or {}).items() if k != "tables"})
    try:
        write_json(path / MANIFEST, manifest)
    except BaseException:
        shutil.rmtree(tdir, ignore_errors=True)
        raise
    _remove_old_tables(path, keep=tables)
    ds.manifest, ds.root = manifest, path
    return path


def _remove_old_tables(path: Path, *, keep: str) -> None:
    """Delete tables the manifest no longer names: flat-layout files and older table dirs.

    Only our own names are touched; sibling stage directories (embeddings/, tokenizer/, ...)
    are kept. A concurrent writer whose manifest lost the race loses its tables here too, and
    its reader then gets a clear "missing table" error rather than mixed data.
    """
    for name in TABLES:
        (path / f"{name}.parquet").unlink(missing_ok=True)
    for child in path.glob(f"{TABLES_PREFIX}*"):
        if child.name != keep and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
    for stale in path.glob(".*.parquet.tmp"):  # left by the old rename-one-by-one writer
        stale.unlink(missing_ok=True)


def table_path(root: str | Path, manifest: dict, name: str) -> Path:
    """Where table ``name`` ("tracks", "playlists", "conversations") of a dataset lives.

    Args:
        root: the dataset directory.
        manifest: its manifest (``Dataset.manifest``).
        name: one of ``TABLES``.
    Returns:
        ``root/<manifest["tables"]>/name.parquet``, or ``root/name.parquet`` for datasets
        written before table directories existed.
    """
    tables = manifest.get("tables")
    return Path(root) / (tables or "") / f"{name}.parquet"


def _read_playlists(file: Path, track_ids: list[str]) -> list[Playlist]:
    """The playlists table, row group by row group, each entry the catalog's own id string.

    ``to_pylist`` would give every playlist entry a fresh string (66M at MPD's size: several
    GB); here an entry is the same object as its track's id (``track_ids``), so a playlist costs
    one pointer per entry. An id the catalog lacks keeps one string per row group.
    """
    canon = {t: t for t in track_ids}
    out: list[Playlist] = []
    pf = pq.ParquetFile(file)
    for g in range(pf.metadata.num_row_groups):
        table = pf.read_row_group(g)
        lists = table.column("track_ids").combine_chunks()
        rows = table.drop_columns(["track_ids"]).to_pylist()
        if lists.values.null_count:  # never written by TalkPlay; read the plain way
            entries = lists.to_pylist()
        else:
            enc = pc.dictionary_encode(lists.values)
            words = np.empty(len(enc.dictionary), dtype=object)
            words[:] = [canon.get(w, w) for w in enc.dictionary.to_pylist()]
            flat = words[enc.indices.to_numpy()].tolist()
            offsets = lists.offsets.to_numpy()
            valid = lists.is_valid().to_numpy(zero_copy_only=False)
            entries = [flat[offsets[k]:offsets[k + 1]] if valid[k] else None
                       for k in range(len(rows))]
        for row, ids in zip(rows, entries, strict=True):
            row["track_ids"] = ids
            out.append(Playlist(**row))
    return out


def read_dataset(path: str | Path) -> Dataset:
    """Read a dataset directory back into typed records. Raises DataError naming the file."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.exists():
        raise DataError("not a TalkPlay dataset (no manifest.json)", file=str(path))
    manifest = read_json(mpath)
    if manifest.get("kind") != "dataset":
        raise DataError(f"manifest kind is {manifest.get('kind')!r}, expected 'dataset'",
                        file=str(mpath), field="kind")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise DataError(f"format_version {manifest['format_version']} is newer than this "
                        f"TalkPlay understands ({FORMAT_VERSION})", file=str(mpath),
                        field="format_version")
    tables = manifest.get("tables")
    if tables is not None and (not isinstance(tables, str) or "/" in tables or "\\" in tables
                               or not tables.startswith(TABLES_PREFIX)):
        raise DataError(f"bad tables directory {tables!r}", file=str(mpath), field="tables")
    ds = Dataset(manifest=manifest, root=path)
    files = {name: table_path(path, manifest, name) for name in TABLES}
    for file in files.values():
        if not file.exists():
            raise DataError(f"missing table {file.relative_to(path)}", file=str(path))
    for row in pq.read_table(files["tracks"]).to_pylist():
        for k in ("artists", "tags", "pseudo_tags"):
            row[k] = row[k] or []
        row["cold"] = bool(row["cold"])
        ds.tracks.append(Track(**row))
    ds.playlists = _read_playlists(files["playlists"], [t.id for t in ds.tracks])
    for row in pq.read_table(files["conversations"]).to_pylist():
        msgs = [Message(m["role"], m["content"]) for m in row.pop("messages") or []]
        raw_meta = row.pop("meta")
        meta = json.loads(raw_meta) if raw_meta else {}
        ds.conversations.append(Conversation(messages=msgs, meta=meta, **row))
    return ds
