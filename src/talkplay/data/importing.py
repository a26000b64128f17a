"""What every importer shares: the result record and the all-or-nothing dataset write."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from talkplay.data.dataset import Dataset, validate, write_dataset
from talkplay.data.errors import DataError, Dropped
from talkplay.io import MANIFEST, atomic_dir

log = logging.getLogger(__name__)


@dataclass
class ImportResult:
    """An imported dataset, where it was written, and what ``--skip-invalid`` dropped."""

    dataset: Dataset
    path: Path
    dropped: Dropped = field(default_factory=Dropped)
    notes: list[str] = field(default_factory=list)
    """Facts worth printing (metadata conflicts, empty goal playlists, ...)."""


def check_out_dir(out: str | Path) -> Path:
    """Refuse an output path that would clobber something that is not a TalkPlay dataset.

    Called before any reading so that a wrong ``--out`` fails fast.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError("output path exists and is not a directory", file=str(out))
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise DataError("output directory is not empty and is not a TalkPlay dataset; "
                        "choose a new --out", file=str(out))
    return out


def write_import(out: str | Path, ds: Dataset, *, source: str, split_rule: str,
                 extra: dict | None = None) -> Path:
    """Validate ``ds`` and write it to ``out`` so that no half dataset is ever left behind.

    A new directory is built under a temporary name and renamed into place; an existing
    dataset directory is rewritten table by table with the manifest last (its sub-directories
    such as ``embeddings/`` are kept, as ``write_dataset`` does).

    Args:
        out: dataset directory.
        ds: the imported records.
        source: what the data came from, for the manifest.
        split_rule: how splits were assigned, for the manifest.
        extra: more manifest fields (importer options, dropped counts).
    Returns:
        The dataset directory.
    """
    out = check_out_dir(out)
    validate(ds, where=source)
    if (out / MANIFEST).exists():
        write_dataset(out, ds, source=source, split_rule=split_rule, extra=extra, check=False)
    else:
        with atomic_dir(out) as tmp:
            write_dataset(tmp, ds, source=source, split_rule=split_rule, extra=extra, check=False)
        ds.root = out
    log.debug("wrote %s: %s", out, ds.counts())
    return out
