"""How long the dense-head refit spends on hidden states: one fresh prefill per target against
``head_fit.prompt_states`` (the recommender's prompt cache: a conversation's next turn runs
only its new tokens), on the same targets, in one invocation.

    python benchmarks/head_states.py --run RUN [--targets 128] [--threads 2]

Prints milliseconds per target for each, the ratio, the share of prompt tokens the cache
reused, and the largest difference between the two states (they must agree).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from talkplay.data.dataset import read_dataset
from talkplay.evaluate.head_fit import prompt_states
from talkplay.evaluate.protocols import build_targets, resolve_protocol
from talkplay.io import read_json
from talkplay.recommend.engine import prefill
from talkplay.recommend.recommender import load_talkplay


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--targets", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tp = load_talkplay(args.run, with_reply=False, cache_size=4)
    ds = read_dataset(read_json(f"{args.run}/manifest.json")["data"])
    targets = build_targets(ds, resolve_protocol(ds, "auto"), split="train")[:args.targets]
    lengths = [len(tp.prompt(t.history)[0]) for t in targets]
    t0 = time.perf_counter()
    with torch.inference_mode():
        fresh = np.stack([prefill(tp.model, tp.prompt(t.history)[0]).hidden.numpy() for t in targets])
    t_fresh = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached = prompt_states(tp, targets)
    t_cached = time.perf_counter() - t0
    n, stats = len(targets), tp.cache_stats
    print(f"{n} targets, prompts of {min(lengths)}-{max(lengths)} tokens (mean {np.mean(lengths):.0f}), "
          f"{args.threads} threads")
    print(f"fresh prefill per target: {t_fresh / n * 1000:.1f} ms a target")
    print(f"prompt_states (cached):   {t_cached / n * 1000:.1f} ms a target "
          f"({stats['reused_tokens'] / max(stats['prompt_tokens'], 1):.0%} of prompt tokens reused)")
    print(f"speed-up: {t_fresh / t_cached:.2f}x; largest difference {np.abs(fresh - cached).max():.2e}")


if __name__ == "__main__":
    main()
