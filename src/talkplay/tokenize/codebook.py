"""Codebooks on disk: centroids per modality and five codes per track.

```
DIR/tokenizer/manifest.json    kind=tokenizer, k per modality, seed, config, embedding inputs
DIR/tokenizer/item_ids.json    track ids, row order of codes.npy (the dataset's track order)
DIR/tokenizer/codes.npy        int32 [n_items, 5]; MISSING (-1) where a modality is absent
DIR/tokenizer/centroids_{m}.npy float32 [K_m, d_m], one per modality
DIR/tokenizer/stats.json       cluster sizes, empty clusters, collisions, coverage
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkplay.io import MANIFEST, atomic_dir, make_manifest, read_json, write_json
from talkplay.tokenize.grammar import MISSING, MODALITIES, item_text

FORMAT_VERSION = 1


@dataclass
class Codebook:
    """Five codes per catalog item, and the K-means centroids they index."""

    item_ids: list[str]
    codes: np.ndarray
    """int32 [n_items, 5], columns in MODALITIES order, MISSING where absent."""
    centroids: dict[str, np.ndarray]
    """modality -> float32 [K_m, d_m]."""
    stats: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int32)
        if self.codes.shape != (len(self.item_ids), len(MODALITIES)):
            raise ValueError(f"codes shape {self.codes.shape} != ({len(self.item_ids)}, 5)")
        self.row = {tid: i for i, tid in enumerate(self.item_ids)}

    @property
    def k(self) -> dict[str, int]:
        """Clusters per modality."""
        return {m: int(self.centroids[m].shape[0]) for m in MODALITIES}

    def codes_of(self, track_id: str) -> tuple[int, ...]:
        return tuple(int(c) for c in self.codes[self.row[track_id]])

    def text_of(self, track_id: str) -> str:
        """The wrapped music block of one track."""
        return item_text(self.codes_of(track_id))

    def save(self, path: str | Path, **manifest_fields) -> Path:
        """Write atomically to ``path`` (a directory, replaced whole)."""
        with atomic_dir(path) as tmp:
            np.save(tmp / "codes.npy", self.codes)
            for m in MODALITIES:
                np.save(tmp / f"centroids_{m}.npy", np.asarray(self.centroids[m], np.float32))
            write_json(tmp / "item_ids.json", self.item_ids)
            write_json(tmp / "stats.json", self.stats)
            # Fields make_manifest sets itself are refreshed, not passed twice (a loaded
            # codebook carries them in its manifest).
            own = {"kind", "format_version", "talkplay_version", "created", "k"}
            kept = {k: v for k, v in {**self.manifest, **manifest_fields}.items() if k not in own}
            self.manifest = make_manifest("tokenizer", FORMAT_VERSION, k=self.k, **kept)
            write_json(tmp / MANIFEST, self.manifest)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Codebook:
        path = Path(path)
        if not (path / MANIFEST).exists():
            raise FileNotFoundError(f"{path}: no tokenizer here (run `talkplay tokenize` first)")
        return cls(
            item_ids=read_json(path / "item_ids.json"),
            codes=np.load(path / "codes.npy"),
            centroids={m: np.load(path / f"centroids_{m}.npy") for m in MODALITIES},
            stats=read_json(path / "stats.json") if (path / "stats.json").exists() else {},
            manifest=read_json(path / MANIFEST),
        )


__all__ = ["Codebook", "MISSING"]
