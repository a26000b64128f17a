"""Training curves like the paper's Figure 2: train/validation CE and the self-similarity loss."""

from __future__ import annotations

import json
from pathlib import Path

from talkplay.io import atomic_path


def plot_curves(metrics: str | Path, out: str | Path) -> Path | None:
    """Plot ``RUN/metrics.jsonl`` to a PNG (two panels). Returns the path, or None if no rows.

    Args:
        metrics: JSON-lines file with ``step``, ``train_ce``, ``val_ce`` (some rows), ``self_sim``.
        out: PNG path (written atomically).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(metrics)
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    if not rows:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = [r["step"] for r in rows]
    ax1.plot(steps, [r["train_ce"] for r in rows], label="train CE", lw=1)
    for key, label in (("train_ce_conversation", "train CE (conversation)"),
                       ("train_ce_playlist", "train CE (playlist)")):
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax1.plot(*zip(*pts, strict=True), label=label, lw=0.6, alpha=0.6)
    val = [(r["step"], r["val_ce"]) for r in rows if "val_ce" in r]
    if val:
        ax1.plot(*zip(*val, strict=True), "o-", label="validation CE", ms=3)
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy")
    ax1.legend(fontsize=7)
    ax2.plot(steps, [r["self_sim"] for r in rows], color="C3", lw=1)
    ax2.set_xlabel("step")
    ax2.set_ylabel("self-similarity loss")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(out)
