"""Training throughput: our loop (talkplay.train.loop.fit) against a plain Hugging Face Trainer.

Same model (the base with music tokens added), same batches in the same order, same batch size,
optimizer (AdamW), learning rate, clipping and precision; measured in one invocation. Each
system runs in its own child process so that peak memory (max RSS) is its own. Throughput =
non-padding tokens per second from the end of the first (warm-up) step to the end of the
last, wall clock (data preparation and logging included for both).

    python benchmarks/train_throughput.py --base smollm2 --steps 4 --batch-size 4

Prints both rows and the ratio ours / Trainer (> 1: ours is faster).

``--base random:llama-3.2-1b`` builds the paper's model shape (Llama-3.2-1B, 1.24B parameters)
from its config with random weights, so the paper's size is measured with no download; on a
GPU each row also gives the model FLOPs utilisation (MFU, ``talkplay.train.flops``: FLOPs of the
work really done over the device's dense bf16 peak) and the peak GPU memory. ``--turns 60
--playlist-share 0`` makes every sequence fill the context (a batch of 32 x 1024 is then 32k
real tokens; the renderer cuts long conversations into windows, so fill is about 0.93),
``--grad-accum`` splits a step into micro-batches (the 1B shape's activations for 32 x 1024
tokens do not fit 139 GB at once), ``--baseline none`` runs our loop alone:

    python benchmarks/train_throughput.py --base random:llama-3.2-1b --precision bf16 \
        --batch-size 16 --grad-accum 2 --context-length 1024 --turns 60 --playlist-share 0 \
        --steps 8 --repeats 1 --baseline none

``--precision`` (auto | bf16 | fp32, as ``talkplay train``) applies to both systems. With
``--baseline ours-fp32`` the baseline is our own loop in fp32 instead of the Trainer, which
measures what bf16 autocast buys on this machine (on CPUs with AMX, bf16 is the default).

    python benchmarks/train_throughput.py --baseline ours-fp32 --precision bf16 \
        --batch-size 8 --context-length 256 --steps 6
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _profile(args):
    from talkplay.config import profile

    prof = profile("tiny")
    prof.model.base = args.base
    t = prof.train
    t.max_steps, t.batch_size, t.grad_accum = args.steps, args.batch_size, args.grad_accum
    t.lr, t.warmup_steps, t.context_length = 1e-4, 0, args.context_length
    t.eval_every = t.save_every = 10**9  # the final evaluation/save happen after timing ends
    t.precision = args.precision
    if args.playlist_share is not None:
        t.playlist_share = args.playlist_share
    return prof


def run_ours(args, work: Path) -> dict:
    from talkplay.train.loop import fit, setup

    s = setup(args.data, work / "ours", _profile(args), fresh=True)
    fit(s)
    rows = [json.loads(x) for x in (work / "ours" / "metrics.jsonl").read_text().splitlines()]
    # Wall time from the end of step 1 to the end of the last step (data, logging included).
    tokens = sum(r["tokens_per_s"] * r["seconds"] for r in rows[1:])
    out = {"tokens_per_s": tokens / (rows[-1]["elapsed_s"] - rows[0]["elapsed_s"]),
           "train_ce": [round(r["train_ce"], 4) for r in rows],
           "fill": sum(r["fill"] for r in rows) / len(rows)}
    if "mfu" in rows[-1]:  # a GPU with a known peak: FLOPs of the timed steps over their time
        flops = sum(r["mfu"] * r["seconds"] for r in rows[1:])
        out["mfu"] = flops / sum(r["seconds"] for r in rows[1:])
        out["mfu_steps"] = [round(r["mfu"], 3) for r in rows]
    return out


def run_trainer(args, work: Path) -> dict:
    import torch
    from torch.utils.data import IterableDataset
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from talkplay.train.data import collate
    from talkplay.train.loop import resolve_precision, setup

    s = setup(args.data, work / "hf", _profile(args), fresh=True)
    model = s.acc.unwrap_model(s.model)
    pad = s.tokenizer.pad_token_id
    batches = [s.data.next_batch() for _ in range(args.steps)]  # the batches ours trains on

    class Ordered(IterableDataset):  # Trainer does not shuffle an IterableDataset
        def __iter__(self):
            for b in batches:
                yield from b

    def collator(samples):
        from talkplay.train.data import Sample

        b = collate([Sample(x.ids, x.mask, x.kind) for x in samples], pad)
        return {k: b[k] for k in ("input_ids", "attention_mask", "labels")}

    ends, tokens = [], [int(collator(b)["attention_mask"].sum()) for b in batches]

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            ends.append(time.perf_counter())

    targs = TrainingArguments(
        output_dir=str(work / "hf_out"), per_device_train_batch_size=args.batch_size,
        max_steps=args.steps, learning_rate=1e-4, warmup_steps=0, lr_scheduler_type="cosine",
        adam_beta2=0.95, weight_decay=0.0, max_grad_norm=1.0, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
        bf16=resolve_precision(args.precision) == "bf16", dataloader_num_workers=0, remove_unused_columns=False,
        disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=targs, train_dataset=Ordered(), data_collator=collator,
                      callbacks=[Clock()])
    trainer.train()
    losses = [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h]
    # Same measure as ours: end of step 1 to end of the last step.
    return {"tokens_per_s": sum(tokens[1:]) / (ends[-1] - ends[0]),
            "train_ce": losses}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=None,
                   help="dataset with tokenizer/ (default: a toy dataset in a temp dir)")
    p.add_argument("--base", default="smollm2")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--context-length", type=int, default=512)
    p.add_argument("--grad-accum", type=int, default=1,
                   help="micro-batches per step (our loop only; the Trainer baseline needs 1)")
    p.add_argument("--repeats", type=int, default=2, help="runs per system (best is kept)")
    p.add_argument("--trainer-first", action="store_true", help="run the baseline first")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--turns", type=int, default=4,
                   help="exchanges per toy conversation (60 fills a 1024-token context)")
    p.add_argument("--playlist-share", type=float, default=None,
                   help="share of playlist sequences in a batch (default: the profile's)")
    p.add_argument("--baseline", default="trainer", choices=["trainer", "ours-fp32", "none"],
                   help="what ours is compared with (none: our loop alone)")
    p.add_argument("--only", choices=["ours", "trainer", "ours-fp32"], help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.grad_accum > 1 and args.baseline == "trainer" and not args.only:
        p.error("--grad-accum > 1 applies to our loop only: use --baseline none or ours-fp32")
    if args.only:  # child process: one system, print one JSON line
        if args.only == "ours-fp32":
            args.precision = "fp32"
        out = (run_trainer if args.only == "trainer" else run_ours)(args, args.work)
        out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        import torch

        if torch.cuda.is_available():
            out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
        print("RESULT " + json.dumps(out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.data is None:
            from talkplay.train.toy import toy_dataset

            args.data = toy_dataset(work / "data", n_conversations=48, turns=args.turns)
        res: dict[str, dict] = {}
        base = args.baseline
        order = ("ours",) if base == "none" else (base, "ours") if args.trainer_first else ("ours", base)
        # Alternate the systems and keep each one's best run: on a shared machine the load
        # changes between runs, and the best run is the least disturbed one.
        for name in [n for _ in range(args.repeats) for n in order]:
            cmd = [sys.executable, __file__, "--only", name, "--work", str(work),
                   "--data", str(args.data), "--base", args.base, "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--context-length",
                   str(args.context_length), "--precision", args.precision,
                   "--grad-accum", str(args.grad_accum)]
            if args.playlist_share is not None:
                cmd += ["--playlist-share", str(args.playlist_share)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if out.returncode or not line:
                sys.exit(f"{name} failed:\n{out.stderr[-4000:]}")
            r = json.loads(line[-1][7:])
            print(f"  {name}: {r['tokens_per_s']:.1f} tokens/s", flush=True)
            if name not in res or r["tokens_per_s"] > res[name]["tokens_per_s"]:
                res[name] = r
    for name, r in res.items():
        extra = f"  peak GPU {r['peak_gpu_gb']:.2f} GB" if "peak_gpu_gb" in r else ""
        extra += f"  MFU {100 * r['mfu']:.1f}% (steps {r['mfu_steps']})" if "mfu" in r else ""
        print(f"{name:9s} {r['tokens_per_s']:9.1f} tokens/s  peak RSS {r['peak_rss_gb']:.2f} GB"
              f"{extra}  fill {r.get('fill', float('nan')):.2f}  loss {r['train_ce']}")
    if base != "none":
        print(f"ratio ours ({args.precision}) / {base}: "
              f"{res['ours']['tokens_per_s'] / res[base]['tokens_per_s']:.2f}x throughput, "
              f"{res['ours']['peak_rss_gb'] / res[base]['peak_rss_gb']:.2f}x peak memory")


if __name__ == "__main__":
    main()
