"""Which training settings make TalkPlay win on the embedded world, at a fixed budget.

Trains SmolLM2 once per named configuration on a tokenized dataset and evaluates TalkPlay
(catalog beam search, the default mode) on the **valid** split with the paper protocol: the
test split is for the final report only, and ``--split test`` is refused unless
``--allow-test`` is given (then a warning is printed). Every
configuration gets the same number of optimizer steps, so a GPU can stand in for the
quickstart's CPU budget: pick ``--steps`` = what the CPU reaches in its minutes
(``RUN/metrics.jsonl`` of a quickstart run says how many). Compare the MRR column with the
text baselines of ``talkplay evaluate`` on the same dataset and ``--limit``.

    python benchmarks/quickstart_sweep.py --out sweep \\
        --config hewitt:data=talkplay-work/world \\
        --config grounded:data=talkplay-work/world,token_init=grounded \\
        --config grounded-400:data=talkplay-work/world,token_init=grounded,max_steps=400

A configuration is ``NAME:key=value,...``; keys are ``data`` (a tokenized dataset) and any
``TrainConfig`` field (converted to that field's type), and ``base`` (the base model). Unnamed fields take the quickstart's
values (``--steps``, context 256, batch 8, lr 1e-3, warm-up 10). Results are printed as each
configuration finishes and written to ``OUT/sweep.json`` (rewritten after each one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path


def parse_config(text: str) -> tuple[str, dict[str, str]]:
    """``"name:a=1,b=x"`` -> ``("name", {"a": "1", "b": "x"})``."""
    name, _, rest = text.partition(":")
    fields = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    if not name or "data" not in fields:
        raise SystemExit(f"--config {text!r}: expected NAME:data=DIR[,field=value...]")
    return name, fields


def build_profile(fields: dict[str, str], steps: int):
    from talkplay.config import TrainConfig, profile

    prof = profile("small")
    t = prof.train
    t.max_steps, t.context_length, t.batch_size, t.lr, t.warmup_steps = steps, 256, 8, 1e-3, 10
    t.eval_every = t.save_every = max(1, steps // 4)
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for key, value in fields.items():
        if key == "data":
            continue
        if key == "base":  # ModelConfig.base: smollm2 (default), tiny, or a HF name/path
            prof.model.base = value
            continue
        if key not in types:
            raise SystemExit(f"unknown TrainConfig field {key!r}")
        kind = str(types[key])
        if kind.startswith("int"):
            setattr(t, key, int(value))
        elif kind.startswith("float"):
            setattr(t, key, float(value))
        else:
            setattr(t, key, value)
    return prof


def check_split(split: str, allow_test: bool) -> None:
    """Tuning reads the valid split; the test split only with an explicit override."""
    if split == "test":
        if not allow_test:
            raise SystemExit("--split test: settings chosen on the test split make its figures "
                             "optimistic; tune on --split valid (or pass --allow-test)")
        print("WARNING: tuning on the TEST split (--allow-test); do not report these settings' "
              "test figures as held-out results", file=sys.stderr, flush=True)


def run_one(name: str, fields: dict[str, str], args) -> dict:
    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.run import evaluate
    from talkplay.recommend.recommender import load_talkplay
    from talkplay.train.loop import fit, setup

    prof = build_profile(fields, args.steps)
    run = Path(args.out) / name
    t0 = time.perf_counter()
    s = setup(fields["data"], run, prof, fresh=True)
    summary = fit(s)
    train_s = time.perf_counter() - t0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    tokens = sum(r["tokens_per_s"] * r["seconds"] for r in rows)
    del s
    ds = read_dataset(fields["data"])
    out = {"name": name, "fields": fields, "steps": summary["step"],
           "best_val_ce": summary["best_val_ce"], "train_s": round(train_s, 1),
           "train_tokens": round(tokens), "tokens_per_s": round(tokens / sum(r["seconds"] for r in rows), 1)}
    for mode in args.modes.split(","):
        rec = load_talkplay(run, mode=mode, with_reply=False)
        t1 = time.perf_counter()
        res = evaluate(ds, {f"talkplay-{mode}": rec}, protocol="paper", limit=args.limit,
                       split=args.split)
        micro = res["systems"][f"talkplay-{mode}"]["micro"]
        out[mode] = {"mrr": round(micro["mrr"], 4), "hit@10": round(micro["hit@10"], 4),
                     "eval_s": round(time.perf_counter() - t1, 1)}
        del rec
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", required=True, help="NAME:data=DIR[,field=value...]")
    ap.add_argument("--steps", type=int, default=250, help="Optimizer steps (unless a config sets max_steps).")
    ap.add_argument("--limit", type=int, default=None,
                    help="At most this many conversations of --split (default: all).")
    ap.add_argument("--split", default="valid",
                    help="Conversation split to score (valid; test only with --allow-test).")
    ap.add_argument("--allow-test", action="store_true",
                    help="Let --split test through (prints a warning): choices made on the "
                         "test split make its figures optimistic.")
    ap.add_argument("--modes", default="beam", help="TalkPlay decoding modes to evaluate (beam,paper).")
    ap.add_argument("--out", default="sweep")
    ap.add_argument("--deadline-min", type=float, default=None,
                    help="Start no new configuration after this many minutes.")
    args = ap.parse_args(argv)
    check_split(args.split, args.allow_test)
    configs = [parse_config(c) for c in args.config]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    start, results = time.perf_counter(), []
    for name, fields in configs:
        if args.deadline_min and (time.perf_counter() - start) / 60 > args.deadline_min:
            print(f"deadline reached: skipping {name}", flush=True)
            continue
        r = run_one(name, fields, args)
        results.append(r)
        print(json.dumps(r), flush=True)
        (Path(args.out) / "sweep.json").write_text(json.dumps(results, indent=1))
    print(f"\n{'config':24s} {'steps':>5s} {'tokens':>8s} {'val ce':>7s} " +
          " ".join(f"{m + ' MRR':>9s}" for m in args.modes.split(",")))
    for r in results:
        print(f"{r['name']:24s} {r['steps']:5d} {r['train_tokens']:8d} {r['best_val_ce']:7.3f} " +
              " ".join(f"{r[m]['mrr']:9.4f}" for m in args.modes.split(",")))


if __name__ == "__main__":
    sys.exit(main())
