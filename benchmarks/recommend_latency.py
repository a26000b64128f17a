"""Claim: how long TalkPlay (SmolLM2, CPU) takes to rank a top-100 for one conversation turn, per
decoding mode, beside the BM25 and dense baselines on the same turns; what reusing the KV cache
of the previous turn's prompt saves; and what ``talkplay-hybrid`` costs beside beam mode.

    .venv/bin/python benchmarks/recommend_latency.py [--run RUN --data DIR] [--turns 24]
        [--reply-turns 8] [--threads N] [--parts modes,reply,hybrid] [--quantize int8|int8-reply]

Without ``--run/--data`` a small world is built in a temporary directory (about 2-3 minutes on
2 CPU cores): ``talkplay data synth --tracks 500 --no-audio``-sized tracks and playlists,
simulator conversations, item2vec + MiniLM embeddings (no audio modality), K-means codes, and a
SmolLM2 run trained for one step (latency does not depend on training quality).

Turns: the paper protocol's test targets, conversation by conversation, turn by turn (each
conversation's turns in order, as a chat replays them). Per system the same turns are ranked
(k = 100 + excluded tracks, as ``talkplay evaluate`` asks) and each ``recommend`` call is timed.

- Latency: median and p95 seconds per turn. For dense, the query encoder's memo is cleared first
  and ``prepare`` is not called (an interactive turn encodes its own text).
- Throughput: turns per second on the evaluation path (``prepare`` first where a system has
  it, then every turn; what ``talkplay evaluate`` does, without the metrics).
- TalkPlay modes: paper and beam, without reply (evaluation) and with reply (chat), each with the
  prefix cache (default) and, for the no-reply modes, without it (``cache_size=0``). Rankings are
  checked to be identical with and without the cache.
- Hybrid: bm25, talkplay-beam and ``talkplay-hybrid`` replayed again, alternating turn by turn,
  with nothing shared: the hybrid has its own beam recommender (no ``fusion.Memo``, so its time
  includes its own beam search), its own bm25 / dense / cooc and no shared pools. Its weights
  are RUN/hybrid.json's "talkplay-hybrid" entry when there is one, else ``HybridConfig()``'s.
  Ratios in this table are against talkplay-beam's median. ``--lm-top all`` (default) also
  times the same hybrid with the model scoring every candidate when the saved weights chose an
  ``lm_top`` (``--lm-top 10,all``: any values; ``none``: only the saved hybrid).
- ``--quantize int8|int8-reply``: the +reply modes again with the run's linear layers
  int8-quantised (``lm.quantize``; int8-reply: only for the reply), alternating with the
  float32 rows turn by turn; printed as the ratio of medians and the share of turns whose first
  track is the same.

Every other ratio is against bm25 measured in this same process.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
log = logging.getLogger("recommend_latency")


def build_world(root: Path, tracks: int, seed: int, console: Console) -> tuple[Path, Path]:
    """World + simulator conversations + embeddings + codebook + a one-step SmolLM2 run.

    Args:
        root: an empty working directory.
        tracks: catalog size.
        seed: world, simulator and training seed.
        console: where progress lines go.
    Returns:
        (data directory, run directory).
    """
    from talkplay.config import EmbedConfig, ModelConfig, TokenizerConfig, profile
    from talkplay.data.conversations.common import (
        ConversationShape,
        add_conversations,
        save_with_generator,
    )
    from talkplay.data.conversations.simulator import SimulatorConfig, simulate
    from talkplay.data.dataset import read_dataset
    from talkplay.data.world import WorldConfig, synth_world
    from talkplay.embed.build import build_embeddings
    from talkplay.tokenize.build import build_codebook
    from talkplay.train.loop import train

    data, run = root / "data", root / "run"
    t0 = time.perf_counter()
    synth_world(data, WorldConfig(seed=seed, n_tracks=tracks, n_artists=max(10, tracks // 5),
                                  n_playlists=max(100, tracks), n_scenes=10, audio=False))
    ds = read_dataset(data)
    add_conversations(ds, simulate(ds.tracks, ds.playlists, SimulatorConfig(ConversationShape(seed=seed))))
    save_with_generator(data, ds, {"generator": "simulator", "config": {"seed": seed}})
    console.print(f"world: {len(ds.tracks)} tracks, {len(ds.conversations)} conversations "
                  f"({time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    build_embeddings(data, EmbedConfig(item2vec_epochs=5, seed=seed),
                     modalities=["playlist", "semantic", "metadata", "lyrics"])
    build_codebook(data, TokenizerConfig(k=64, niter=10, seed=seed))
    console.print(f"embeddings + codebook ({time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    prof = profile("small")
    prof.model = ModelConfig(base="smollm2")
    tc = prof.train
    tc.max_steps, tc.batch_size, tc.context_length = 1, 1, 512
    tc.eval_every, tc.save_every, tc.eval_batches, tc.warmup_steps = 1, 1, 1, 0
    train(data, run, prof)
    console.print(f"SmolLM2 run, 1 step ({time.perf_counter() - t0:.0f} s)")
    return data, run


@dataclass
class Measured:
    """Per-turn seconds of one system (or TalkPlay configuration) over the same turns."""

    name: str
    seconds: list[float]
    total: float
    """Wall-clock of the whole pass (``prepare`` included), for turns per second."""
    rankings: list[list[str]] = field(default_factory=list)
    note: str = ""

    def median(self) -> float:
        return float(np.median(self.seconds))

    def p95(self) -> float:
        return float(np.percentile(self.seconds, 95))

    def rate(self) -> float:
        return len(self.seconds) / self.total


def replay(name: str, system, turns: list, prepare: bool = False, note: str = "") -> Measured:
    """Rank every turn in order (k = 100 + excluded, as the evaluation asks), timing each call.

    Args:
        name: row label.
        system: a Recommender.
        turns: evaluation targets (history, exclude), conversation by conversation.
        prepare: call the system's ``prepare(histories)`` first (evaluation path).
        note: shown beside the row.
    Returns:
        The timings and the rankings.
    """
    started = time.perf_counter()
    if prepare and callable(getattr(system, "prepare", None)):
        system.prepare([t.history for t in turns])
    seconds, rankings = [], []
    for t in turns:
        t0 = time.perf_counter()
        rec = system.recommend(t.history, k=100 + len(t.exclude), exclude=set(t.exclude))
        seconds.append(time.perf_counter() - t0)
        rankings.append([s.track_id for s in rec.tracks])
    return Measured(name, seconds, time.perf_counter() - started, rankings, note)


def pick_turns(targets: list, n: int) -> list:
    """The first ``n`` targets, extended to finish the last conversation (a chat replay)."""
    out = list(targets[:n])
    for t in targets[n:]:
        if not out or t.conversation_id != out[-1].conversation_id:
            break
        out.append(t)
    return out


def talkplay_variant(base, mode: str, with_reply: bool, cache_size: int):
    """Another TalkPlayRecommender on the same loaded model (no second copy of the weights)."""
    from talkplay.recommend.recommender import TalkPlayRecommender

    rec = TalkPlayRecommender(base.model, base.tokenizer, base.codebook, base.cfg, mode=mode,
                              popularity=base._pop, context_length=base.context_length,
                              with_reply=with_reply, cache_size=cache_size)
    # the run's dense head, grounded replies, reply guard and weights
    rec.run, rec.facts, rec.guard = base.run, base.facts, base.guard
    rec.quantize, rec.reply_model = base.quantize, base.reply_model
    rec.name = f"talkplay-{mode}" + (" +reply" if with_reply else "") + \
        ("" if cache_size else " (no cache)") + \
        ("" if base.quantize == "none" else f" {base.quantize}") + \
        (f" lookup {base.cfg.reply_lookup}" if with_reply and base.cfg.reply_lookup else "")
    return rec


def alternate(systems: list, turns: list) -> list[Measured]:
    """Replay ``turns`` with every system, alternating them turn by turn so that all see the
    same load on a shared machine."""
    out = [Measured(s.name, [], 0.0) for s in systems]
    for t in turns:
        for s, m in zip(systems, out, strict=True):
            one = replay(s.name, s, [t])
            m.seconds += one.seconds
            m.rankings += one.rankings
            m.total += one.total
    return out


def measure_talkplay(base, mode: str, with_reply: bool, turns: list,
                     cache_sizes: tuple[int, ...] = (8,), others: tuple = ()) -> list[Measured]:
    """Replay ``turns`` with one recommender per cache size (``alternate``); each keeps its
    own cache. ``others``: more loaded runs (e.g. int8-quantised) replayed alongside with the
    first cache size."""
    recs = [talkplay_variant(b, mode, with_reply, c)
            for b, c in [*((base, c) for c in cache_sizes), *((o, cache_sizes[0]) for o in others)]]
    for rec in recs:
        rec.recommend(turns[0].history, k=10)  # warm-up (lazy initialisation), then a cold cache
        rec.clear_cache()
    out = alternate(recs, turns)
    for rec, m in zip(recs, out, strict=True):
        if rec.cache_size:
            st = rec.cache_stats
            m.note = f"reused {st['reused_tokens'] / max(st['prompt_tokens'], 1):.0%} of prompt tokens"
    return out


def measure_hybrid(base, ds, run: Path, bm25, turns: list,
                   lm_tops: tuple[int | None, ...] = ()) -> tuple[list[Measured], str]:
    """bm25, talkplay-beam and talkplay-hybrid on ``turns`` (``alternate``), sharing no cache.

    The hybrid is assembled as ``talkplay evaluate`` does, but with a fresh beam recommender
    (no ``fusion.Memo``), its own retrievers and ``shared=None``. Each of ``lm_tops`` other
    than the saved one adds the same hybrid with that ``lm_top`` (None: the model scores every
    candidate), with retrievers of its own, as one more row.
    Returns:
        The rows, and where the hybrid's weights came from with its description.
    """
    from talkplay.evaluate.baselines import BaselineOptions
    from talkplay.evaluate.hybrid import (
        HYBRID_FILE,
        HybridConfig,
        HybridRecommender,
        build_retrievers,
        fitted_text_model,
        load_config,
    )

    cfg = load_config(run, "talkplay-hybrid")
    source = (f"weights from {run / HYBRID_FILE}" if cfg else
              f"default HybridConfig() weights (no talkplay-hybrid entry in {run / HYBRID_FILE})")
    cfg = cfg or HybridConfig()
    options = BaselineOptions(text_model=fitted_text_model(cfg))  # the encoder it was fit with
    beam = talkplay_variant(base, "beam", False, 8)
    hybrids = []
    for top in (cfg.lm_top, *(t for t in dict.fromkeys(lm_tops) if t != cfg.lm_top)):
        name = "talkplay-hybrid" if top == cfg.lm_top else (
            "hybrid, every candidate scored" if top is None else f"hybrid, lm_top {top}")
        hybrids.append(HybridRecommender(talkplay_variant(base, "beam", False, 8),
                                         build_retrievers(ds, options), replace(cfg, lm_top=top),
                                         name=name, shared=None, tracks=ds.tracks))
    for rec in (beam, *hybrids):
        rec.recommend(turns[0].history, k=10)  # warm-up, then cold caches
    beam.clear_cache()
    for hybrid in hybrids:
        hybrid.tp.clear_cache()
        hybrid.retrievers["dense"][0].embed.memo.clear()
    return alternate([bm25, beam, *hybrids], turns), f"{source}; {hybrids[0].description}"


def hybrid_table(rows: list[Measured]) -> Table:
    t = Table(title="talkplay-hybrid beside talkplay-beam, one turn (ms)")
    for col in ("system", "turns", "median ms", "p95 ms", "median / beam"):
        t.add_column(col, justify="left" if col == "system" else "right")
    beam = next(r for r in rows if r.name == "talkplay-beam")
    for r in rows:
        t.add_row(r.name, str(len(r.seconds)), f"{r.median() * 1e3:.1f}", f"{r.p95() * 1e3:.1f}",
                  f"{r.median() / beam.median():.3g}x")
    return t


def table(rows: list[Measured], bm25: Measured) -> Table:
    t = Table(title="Time to a ranked top-100, one turn (seconds)")
    for col in ("system", "turns", "median", "p95", "turns/s", "median / bm25",
                "bm25 turns/s / this", "note"):
        t.add_column(col, justify="left" if col in ("system", "note") else "right")
    for r in rows:
        t.add_row(r.name, str(len(r.seconds)), f"{r.median():.4f}", f"{r.p95():.4f}",
                  f"{r.rate():.2f}", f"{r.median() / bm25.median():.1f}x",
                  f"{bm25.rate() / r.rate():.1f}x", r.note)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a TalkPlay run directory (talkplay train)")
    ap.add_argument("--data", type=Path, help="its dataset directory (test conversations)")
    ap.add_argument("--turns", type=int, default=30,
                    help="test turns per system without reply (whole conversations)")
    ap.add_argument("--reply-turns", type=int, default=8, help="turns for the +reply modes")
    ap.add_argument("--max-reply-tokens", type=int, default=None,
                    help="reply length cap (default: the run's generate config)")
    ap.add_argument("--tracks", type=int, default=500, help="catalog size of the built world")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: on a busy shared CPU, 2 threads spin-wait on "
                         "each other and were measured 17-35x slower)")
    ap.add_argument("--keep", type=Path, help="build the world here and keep it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quantize", default="none",
                    choices=["none", "int8", "int8-reply", "bf16", "bf16-int8-reply"],
                    help="also replay the +reply modes with the run's weights so (same turns, "
                         "alternating), and compare")
    ap.add_argument("--reply-lookup", type=int, default=0,
                    help="prompt-lookup speculative decoding of the reply in the compared rows "
                         "(the float rows always decode plainly)")
    ap.add_argument("--lm-top", default="all",
                    help="hybrid part: also time the hybrid with these lm_top values, comma "
                         "separated ('all': the model scores every candidate; 'none': no "
                         "extra row); the run's saved value is always timed")
    ap.add_argument("--parts", default="modes,reply,hybrid",
                    help="what to measure, comma-separated: modes (paper/beam with and without the "
                         "cache), reply (the +reply modes; grounded when the run is), hybrid")
    args = ap.parse_args()
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    try:
        args.lm_top = tuple(None if v == "all" else int(v) for v in args.lm_top.split(",")
                            if v.strip() and v != "none")
    except ValueError:
        ap.error(f"--lm-top takes positive integers, 'all' or 'none'; got {args.lm_top!r}")
    if any(v is not None and v < 1 for v in args.lm_top):
        ap.error(f"--lm-top values must be >= 1; got {args.lm_top}")
    if not args.parts or args.parts - {"modes", "reply", "hybrid"}:
        ap.error(f"--parts takes modes, reply, hybrid; got {sorted(args.parts)}")
    if (args.run is None) != (args.data is None):
        ap.error("give both --run and --data, or neither")
    logging.basicConfig(level=logging.WARNING)
    import torch

    from talkplay.cli.app import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(args.threads)
    console = Console(width=150)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="talkplay-latency-") as tmp:
        if args.run is None:
            root = args.keep or Path(tmp)
            root.mkdir(parents=True, exist_ok=True)
            args.data, args.run = build_world(root, args.tracks, args.seed, console)
        run_benchmark(args, console)
    console.print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, "
                  f"1-min load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end")


def run_benchmark(args: argparse.Namespace, console: Console) -> None:
    from talkplay.cli.app import quiet_libraries
    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.protocols import build_targets
    from talkplay.recommend.recommender import load_talkplay

    quiet_libraries()  # again: bm25s sets its log level on import
    ds = read_dataset(args.data)
    targets = build_targets(ds, "paper", split="test")
    if not targets:
        raise SystemExit(f"{args.data}: no test conversations to replay")
    turns = pick_turns(targets, args.turns)
    reply_turns = pick_turns(targets, args.reply_turns)
    console.print(f"{len(turns)} turns from {len({t.conversation_id for t in turns})} test "
                  f"conversations; {len(reply_turns)} with reply")
    rows: list[Measured] = []
    bm25 = SYSTEMS["bm25"](ds, BaselineOptions())
    replay("bm25", bm25, turns[:3])  # warm-up
    rows.append(replay("bm25", bm25, turns))
    dense = SYSTEMS["dense"](ds, BaselineOptions())
    replay("dense", dense, turns[:3])
    dense.embed.memo.clear()  # encode each turn's text in its own call, as a live chat does
    live = replay("dense", dense, turns)
    dense.embed.memo.clear()
    batched = replay("dense", dense, turns, prepare=True)  # the evaluation path
    live.total = batched.total
    live.note = f"turns/s: eval path (prepare); {len(turns) / sum(live.seconds):.1f} turn by turn"
    rows.append(live)

    overrides = {} if args.max_reply_tokens is None else {"max_reply_tokens": args.max_reply_tokens}
    base = load_talkplay(args.run, device="cpu", with_reply=False, reply_lookup=0, **overrides)
    prompt_ms = []
    for t in turns:
        t0 = time.perf_counter()
        base.prompt_ids(t.history)
        prompt_ms.append((time.perf_counter() - t0) * 1e3)
    speedups = []
    for mode in ("paper", "beam") if "modes" in args.parts else ():
        on, off = measure_talkplay(base, mode, False, turns, cache_sizes=(8, 0))
        same = on.rankings == off.rankings
        speedups.append((mode, off.median() / on.median(), sum(off.seconds) / sum(on.seconds),
                         same))
        rows += [on, off]
    quantized = (load_talkplay(args.run, device="cpu", with_reply=False, quantize=args.quantize,
                               reply_lookup=args.reply_lookup, **overrides),) \
        if args.quantize != "none" or args.reply_lookup else ()
    pairs = []
    for mode in ("paper", "beam") if "reply" in args.parts else ():
        measured = measure_talkplay(base, mode, True, reply_turns, others=quantized)
        rows += measured
        if quantized:
            pairs.append(measured)
    console.print(table(rows, rows[0]))
    for exact, q in pairs:
        same = np.mean([a[:1] == b[:1] for a, b in zip(exact.rankings, q.rankings, strict=True)])
        console.print(f"{q.name}: median turn {q.median() / exact.median():.2f}x of float32's "
                      f"({exact.median():.2f} s -> {q.median():.2f} s); the same first track in "
                      f"{same:.0%} of the turns")
    grounded = "grounded in the track's facts" if base.facts else "not grounded"
    console.print(f"prompt rendering (render_prompt, tokenizer included): median "
                  f"{np.median(prompt_ms):.1f} ms, p95 {np.percentile(prompt_ms, 95):.1f} ms per turn; "
                  f"reply cap {base.cfg.max_reply_tokens} tokens ({grounded}), "
                  f"{base.cfg.num_beams} beams")
    for mode, med, tot, same in speedups:
        console.print(f"prefix cache, {mode}: {med:.2f}x faster median turn, {tot:.2f}x total "
                      f"over the replay; rankings {'identical' if same else 'DIFFERENT'} with "
                      "and without it")
    if "hybrid" in args.parts:
        side, source = measure_hybrid(base, ds, args.run, bm25, turns, args.lm_top)
        console.print(hybrid_table(side))
        console.print(f"talkplay-hybrid: {source}")


if __name__ == "__main__":
    main()
