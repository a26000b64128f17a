"""Pick the recommender to serve: a fine-tuned TalkPlay run or a retrieval baseline."""

from __future__ import annotations

import logging
from pathlib import Path

from talkplay.data.dataset import Dataset, read_dataset
from talkplay.data.errors import DataError
from talkplay.io import MANIFEST, read_json
from talkplay.recommend.protocol import Recommender

log = logging.getLogger(__name__)


def run_data_dir(run: Path) -> Path:
    """The dataset directory a run was trained on (its manifest's ``data`` field).

    Raises:
        DataError: the run has no manifest or the manifest names no data directory.
    """
    path = Path(run) / MANIFEST
    if not path.is_file():
        raise DataError("not a TalkPlay run (no such file); train one with `talkplay train` "
                        "or serve a baseline with --system", file=str(path))
    data = read_json(path).get("data")
    if not data:
        raise DataError("the run manifest names no data directory; pass --data", file=str(path),
                        field="data")
    return Path(data)


def load_recommender(run: Path | None = None, system: str | None = None,
                     data: Path | None = None, quantize: str = "none") -> tuple[Recommender, Dataset]:
    """The recommender and the catalog it recommends from.

    Args:
        run: a fine-tuned run directory (TalkPlay); its manifest names the dataset.
        system: a baseline name (popularity, bm25, dense, cooc, clap); needs ``data``. Or
            "talkplay-hybrid" (with ``run``): its weights come from RUN/hybrid.json, written by
            ``talkplay evaluate --systems talkplay-hybrid`` (fit on the valid split).
        data: the dataset directory (overrides the run's).
        quantize: the TalkPlay model's weights, one of ``lm.quantize.QUANTIZE``.
    Returns:
        ``(recommender, dataset)``.
    Raises:
        DataError: neither or both of run/system, unknown system, missing data.
    """
    if system is not None and system.startswith("talkplay-hybrid"):
        return _load_hybrid(run, system, data, quantize)
    if (run is None) == (system is None):
        raise DataError("give either --run RUN (TalkPlay) or --system NAME --data DIR (baseline)")
    if system is not None:
        from talkplay.evaluate.baselines import SYSTEMS

        if system not in SYSTEMS:
            raise DataError(f"unknown system {system!r}; choose from {list(SYSTEMS)}")
    data_dir = data if data is not None else (run_data_dir(run) if run is not None else None)
    if data_dir is None:
        raise DataError(f"--system {system} needs --data DIR (the dataset to recommend from)")
    ds = read_dataset(data_dir)
    if run is not None:
        from talkplay.recommend.recommender import load_talkplay

        return load_talkplay(run, quantize=quantize), ds
    from talkplay.recommend.replies import TemplateReplies

    log.debug("indexing %d tracks for %s", len(ds.tracks), system)
    return TemplateReplies(SYSTEMS[system](ds), {t.id: t for t in ds.tracks}), ds


def _load_hybrid(run: Path | None, system: str, data: Path | None,
                 quantize: str = "none") -> tuple[Recommender, Dataset]:
    """The hybrid of ``run`` with its saved weights and the baselines over the run's dataset."""
    from talkplay.evaluate.baselines import BaselineOptions
    from talkplay.evaluate.hybrid import (
        HYBRID_FILE,
        HybridRecommender,
        build_retrievers,
        fitted_text_model,
        load_config,
    )
    from talkplay.recommend.recommender import load_talkplay

    if run is None:
        raise DataError(f"--system {system} needs --run RUN (the fine-tuned run it builds on)")
    cfg = load_config(run, system)
    if cfg is None:
        raise DataError(f"no fitted weights for {system}; fit them on the valid split with "
                        f"`talkplay evaluate --run {run} --systems {system} ...` first",
                        file=str(Path(run) / HYBRID_FILE))
    ds = read_dataset(data if data is not None else run_data_dir(run))
    # The dense retriever the weights were fit with (a fine-tuned encoder, if it was one).
    options = BaselineOptions(text_model=fitted_text_model(cfg))
    return HybridRecommender(load_talkplay(run, quantize=quantize), build_retrievers(ds, options), cfg,
                             name=system, tracks=ds.tracks), ds
