"""Claim: int8 or bfloat16 weights (``lm.quantize``) keep TalkPlay's ranking quality, on the valid split.

    .venv/bin/python benchmarks/quantize_quality.py --run RUN --data DIR [--mode beam]
        [--split valid] [--limit 30] [--threads 1] [--methods int8,bf16]

The same run is loaded with float32 weights and once per method (int8 linear layers, bfloat16
weights), and each ranks the same targets of the chosen split (paper or cpcd protocol, as
``talkplay evaluate`` builds them; default the **valid** split: a choice is never made on
test). Prints MRR and Hit@1/10 of each, the paired bootstrap of each method minus float32
(conversations resampled), the share of targets whose first track is the same, and the time
each spent ranking (same process, one after the other, so the ratio is comparable; absolute
seconds are not).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a TalkPlay run directory")
    ap.add_argument("--data", type=Path, required=True, help="its dataset directory")
    ap.add_argument("--mode", default="beam", choices=["beam", "paper"])
    ap.add_argument("--split", default="valid", help="conversation split (default valid)")
    ap.add_argument("--limit", type=int, default=30, help="conversations (default 30)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--methods", default="int8,bf16",
                    help="weights compared with float32, comma-separated: int8, bf16")
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or set(methods) - {"int8", "bf16"}:
        ap.error(f"--methods takes int8, bf16; got {methods}")

    import torch

    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.metrics import micro_average, paired_bootstrap
    from talkplay.evaluate.protocols import build_targets, resolve_protocol
    from talkplay.evaluate.run import run_system
    from talkplay.recommend.recommender import load_talkplay

    torch.set_num_threads(args.threads)
    console = Console()
    ds = read_dataset(args.data)
    targets = build_targets(ds, resolve_protocol(ds, "auto"), split=args.split)
    keep = list(dict.fromkeys(t.conversation_id for t in targets))[:args.limit]
    targets = [t for t in targets if t.conversation_id in set(keep)]
    if not targets:
        raise SystemExit(f"{args.data}: no {args.split} targets")
    console.print(f"{len(targets)} {args.split} targets in {len(keep)} conversations, "
                  f"{args.mode} mode, {torch.get_num_threads()} thread(s)")
    ks = (1, 10, 100)
    out = {}
    for q in ("none", *methods):
        rec = load_talkplay(args.run, mode=args.mode, device="cpu", with_reply=False, quantize=q)
        scored, rankings, _, seconds = run_system(rec, targets, ks=ks, cluster_of={})
        out[q] = (scored, rankings, seconds)
    table = Table(title=f"float32 vs {', '.join(methods)}, {args.split} split")
    for col in ("weights", "MRR", "Hit@1", "Hit@10", "Hit@100", "seconds"):
        table.add_column(col, justify="left" if col == "weights" else "right")
    for q, (scored, _, seconds) in out.items():
        m = micro_average(targets=scored)
        table.add_row("float32" if q == "none" else q, f"{m['mrr']:.4f}", f"{m['hit@1']:.4f}",
                      f"{m['hit@10']:.4f}", f"{m['hit@100']:.4f}", f"{seconds:.1f}")
    console.print(table)
    b, rb, sb = out["none"]
    for q in methods:
        a, ra, sa = out[q]
        for metric in ("mrr", "hit@10"):
            d = paired_bootstrap(a, b, metric=metric)
            console.print(f"{q} - float32 {metric}: {d['diff']:+.4f} [{d['low']:+.4f}, "
                          f"{d['high']:+.4f}]")
        same = np.mean([x[:1] == y[:1] for x, y in zip(ra, rb, strict=True)])
        console.print(f"{q}: same first track in {same:.0%} of targets; ranking time "
                      f"{q} / float32 {sa / sb:.2f}x")


if __name__ == "__main__":
    main()
