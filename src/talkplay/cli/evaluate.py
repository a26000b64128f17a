"""``talkplay evaluate``: baselines (and TalkPlay runs) under the paper or CPCD protocol."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown

from talkplay.cli.app import (
    QuantizeOpt,
    app,
    console,
    fail,
    progress_bar,
    quiet_libraries,
    task_per_key,
)
from talkplay.data.dataset import Dataset, read_dataset
from talkplay.data.errors import DataError
from talkplay.io import MANIFEST, atomic_path, make_manifest, write_json

# Baselines import faiss / bm25s: their names (talkplay.evaluate.baselines.SYSTEMS) are read
# inside the command so `talkplay --help` stays fast.
KS = "1,5,10,20,100"
TALKPLAY_MODES = {"talkplay": None, "talkplay-paper": "paper", "talkplay-beam": "beam"}


def build_talkplay(run: Path | None, name: str, keep_history: bool = False,
                   max_prompt_tokens: int | None = None, quantize: str = "none"):
    """TalkPlayRecommender from a run directory, ranking only (no reply text).

    Args:
        run: the fine-tuned run directory.
        name: "talkplay" (the run's saved mode), "talkplay-paper" or "talkplay-beam".
        max_prompt_tokens: longest prompt before old turns are dropped (None: the training
            context minus 64, as in training).
        keep_history: allow recommending tracks already played (``exclude_seen=False``), as
            ``--keep-history`` does for the baselines.
        quantize: one of ``lm.quantize.QUANTIZE``.
    Returns:
        The recommender, named ``name``.
    Raises:
        DataError: no run given, or the run does not load.
    """
    if run is None:
        raise DataError(f"system {name!r} needs --run RUN (a fine-tuned run directory)")
    from talkplay.recommend.recommender import load_talkplay

    # Evaluation ranks tracks only: a reply per target would cost most of the time, unused.
    rec = load_talkplay(run, mode=TALKPLAY_MODES[name], with_reply=False, quantize=quantize,
                        exclude_seen=not keep_history, max_prompt_tokens=max_prompt_tokens)
    rec.name = name
    return rec


OPT_IN = ["text"]
"""Components the default hybrid and its ablations leave out: the model's text score of names
(``evaluate.text_scores``) raised valid MRR on CPCD (0.476 to 0.502) but not test (README)."""
_ABLATIONS = {"talkplay-hybrid": [], "talkplay-hybrid-no-lm": ["lm"],
              "talkplay-hybrid-no-bm25": ["bm25"], "talkplay-hybrid-no-dense": ["dense"],
              "talkplay-hybrid-no-cooc": ["cooc"], "talkplay-hybrid-no-head": ["head"],
              "talkplay-hybrid-no-named": ["named"], "talkplay-hybrid-no-model": ["lm", "head"]}
HYBRIDS = {**{name: [*OPT_IN, *left] for name, left in _ABLATIONS.items()},
           "talkplay-hybrid-text": []}
"""The hybrid and its ablations (components left out; weights refit without them).
``no-model`` leaves out everything the TalkPlay model gives (its block scores, its beam's
proposals, the dense head and the text score): the retrieval components fused with weights
fit on valid, the best fusion without the model. ``talkplay-hybrid-text`` is the hybrid with
the opt-in components (``OPT_IN``)."""
FUSIONS = {"rrf": ["bm25", "dense", "cooc", "talkplay-beam"], "rrf-text": ["bm25", "dense", "cooc"]}
"""Untuned reciprocal-rank fusions, the baselines of the hybrid."""
COMPOSITES = [*HYBRIDS, *FUSIONS]


_COLD_GAP_SHOWN: set[str] = set()
"""Datasets whose valid/test cold-share warning was printed (``protocols.cold_gap``)."""


def build_hybrid(ds: Dataset, name: str, part, run: Path | None, *, protocol: str,
                 fit_limit: int | None, refit: bool, fit_method: str = "softmax",
                 text_model: str = "minilm"):
    """A hybrid system with weights from RUN/hybrid.json, or fit now on the valid split
    (``text_model``: the dense retriever's encoder, recorded with the weights)."""
    from talkplay.evaluate.hybrid import (
        HYBRID_RETRIEVERS,
        HybridConfig,
        HybridRecommender,
        StaleFit,
        fit_weights,
        load_config,
        save_config,
    )
    from talkplay.evaluate.protocols import build_targets, cluster_map, cold_gap, resolve_protocol

    if run is None:
        raise DataError(f"system {name!r} needs --run RUN (a fine-tuned run directory)")
    try:
        cfg = None if refit else load_config(run, name, text_model)
    except StaleFit as e:  # the run, its head or the dense encoder changed since: fit anew
        console.print(f"[bold yellow]note:[/] {e.reason.split(';')[0]}; fitting anew")
        cfg = None
    fresh = cfg is None
    cfg = cfg or HybridConfig(without=list(HYBRIDS[name]))
    beam = part("talkplay-beam")
    hybrid = HybridRecommender(beam.system, {k: part(k) for k in HYBRID_RETRIEVERS},
                               cfg, name=name, beam=beam, shared=part("pools"), tracks=ds.tracks)
    if fresh:
        resolved = resolve_protocol(ds, protocol)
        targets = build_targets(ds, resolved, split="valid", limit=fit_limit)
        if not targets:
            raise DataError(f"{name}: no valid-split conversations to fit its weights on (import "
                            "with a validation split, e.g. --valid-fraction 0.1)", file=str(ds.root))
        gap = cold_gap(targets, build_targets(ds, resolved, split="test"))
        if gap and str(ds.root) not in _COLD_GAP_SHOWN:  # once per dataset, not per ablation
            _COLD_GAP_SHOWN.add(str(ds.root))
            console.print(f"[bold yellow]warning:[/] hybrid weights: {gap}")
        with progress_bar() as bar:
            task = bar.add_task(f"{name}: fitting weights on {len(targets)} valid targets",
                                total=len(targets))
            fit_weights(hybrid, targets, cluster_map(ds), method=fit_method,
                        progress=lambda done, total: bar.update(task, completed=done))
        save_config(run, name, hybrid.cfg, text_model)
        fitted, top = hybrid.cfg.fitted, hybrid.cfg.lm_top
        scores = "every candidate" if top is None else f"the beam's and the {top} best others"
        console.print(f"{name}: weights {hybrid.cfg.weights} fit on the valid split "
                      f"({fitted['method']}; "
                      f"MRR {fitted['mrr_fitted']:.4f}, equal weights "
                      f"{fitted['mrr_equal_weights']:.4f}); the model scores {scores} (valid "
                      f"MRR / Hit@1 / Hit@10 by lm_top: {fitted['by_lm_top']}); saved in "
                      f"{run}/hybrid.json")
    return hybrid


def build_systems(ds: Dataset, names: list[str], run: Path | None, options,
                  keep_history: bool = False, *, protocol: str = "auto",
                  fit_limit: int | None = None, refit: bool = False,
                  fit_method: str = "softmax", max_prompt_tokens: int | None = None,
                  quantize: str = "none") -> tuple[dict, dict[str, float]]:
    """Build each named system; returns (systems, build seconds per system).

    Components shared by the hybrids and fusions (the retrieval baselines and one TalkPlay beam
    recommender) are built once.
    """
    from talkplay.evaluate.baselines import SYSTEMS
    from talkplay.evaluate.fusion import Memo, RRFRecommender
    from talkplay.evaluate.hybrid import build_retriever

    parts: dict = {}

    def part(key: str):
        if key not in parts:
            if key == "pools":  # the hybrids' shared per-query pools
                parts[key] = {}
            elif key == "named":  # the hybrids' named-artist evidence (not a system alone)
                parts[key] = build_retriever(key, ds, options)
            elif key in TALKPLAY_MODES:  # remembered: talkplay-beam, rrf and hybrids share it
                parts[key] = Memo(build_talkplay(run, key, keep_history, max_prompt_tokens,
                                                  quantize))
            else:
                parts[key] = SYSTEMS[key](ds, options)
        return parts[key]

    systems, seconds = {}, {}
    for name in names:
        started = time.perf_counter()
        with console.status(f"building {name} ..."):
            if name in HYBRIDS:
                built = build_hybrid(ds, name, part, run, protocol=protocol, fit_limit=fit_limit,
                                     refit=refit, fit_method=fit_method,
                                     text_model=options.text_model)
            elif name in FUSIONS:
                built = RRFRecommender({k: part(k) for k in FUSIONS[name]}, name=name)
            elif name in TALKPLAY_MODES:
                built = (part(name) if name == "talkplay-beam"
                         else build_talkplay(run, name, keep_history, max_prompt_tokens,
                                             quantize))
            else:
                built = part(name)
            systems[name] = built
        seconds[name] = round(time.perf_counter() - started, 2)
    return systems, seconds


def check_replies(ds: Dataset, built: dict, run: Path | None, out: Path, n: int, *,
                  protocol: str, split: str, keep_history: bool,
                  max_prompt_tokens: int | None, reply_guard: bool = True,
                  quantize: str = "none") -> dict:
    """``--replies N``: every system's replies on the first N targets, checked (``replies``).

    TalkPlay systems write their own replies (a fresh recommender with replies on; a hybrid
    turns its model's replies on), with or without the reply guard (``recommend.guard``);
    baselines answer from ``recommend.replies``' template. Writes OUT/replies.json and
    OUT/replies.md.
    """
    from talkplay.evaluate.protocols import build_targets, resolve_protocol
    from talkplay.evaluate.replies import ClaimChecker, reply_report
    from talkplay.recommend.replies import TemplateReplies

    tracks = {t.id: t for t in ds.tracks}
    targets = build_targets(ds, resolve_protocol(ds, protocol), split=split)[:n]
    checker = ClaimChecker(ds.tracks)
    report = {}
    for name, system in built.items():
        with console.status(f"{name}: replies on {len(targets)} targets ..."):
            model = None  # the TalkPlay recommender that writes the replies
            if name in TALKPLAY_MODES:
                system = model = build_talkplay(run, name, keep_history, max_prompt_tokens,
                                                quantize)
            elif name in HYBRIDS:
                model = system.tp
            else:
                system = TemplateReplies(system, tracks)
            guard = model.guard if model is not None else None
            if model is not None:
                model.with_reply = True
                model.guard = guard if reply_guard else None
            try:
                report[name] = reply_report(system, targets, tracks, checker)
                report[name]["reply_guard"] = None if model is None else model.guard is not None
                report[name]["quantize"] = None if model is None else model.quantize
            finally:
                if model is not None:
                    model.with_reply, model.guard = False, guard
    write_json(out / "replies.json", report)
    with atomic_path(out / "replies.md") as tmp:
        tmp.write_text(replies_table(report) + "\n")
    return report


def replies_table(report: dict) -> str:
    """Markdown table of ``check_replies``' report."""
    rows = ["| system | reply guard | replies | no false claim | names the track | mean words "
            "| claims per reply | false claims by kind |", "|---|---|---|---|---|---|---|---|"]
    for name, r in report.items():
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["false_by_kind"].items())) or "none"
        guard = {True: "on", False: "off"}.get(r.get("reply_guard"), "template")
        rows.append(f"| {name} | {guard} | {r['replies']} | {r['no_false_claim']:.1%} "
                    f"| {r['names_track']:.1%} "
                    f"| {r['mean_words']:.1f} | {r['claims_per_reply']:.2f} | {kinds} |")
    return "\n".join(rows)


def write_manifest(out: Path, *, data: Path, run: Path | None, systems: dict, protocol: str,
                   resolved: str, split: str, limit: int | None, ks: tuple[int, ...], options,
                   keep_history: bool) -> None:
    """OUT/manifest.json: what was evaluated, on what, with which settings."""
    talkplay = {name: {"mode": rec.mode, "with_reply": rec.with_reply, "quantize": rec.quantize,
                       "generate": asdict(rec.cfg)}
                for name, rec in systems.items() if name in TALKPLAY_MODES}
    hybrids = {name: asdict(rec.cfg) for name, rec in systems.items() if name in HYBRIDS}
    write_json(out / MANIFEST, make_manifest(
        "evaluation", 1, data=str(data.resolve()), run=str(run.resolve()) if run else None,
        systems=list(systems), protocol=protocol, resolved_protocol=resolved, split=split,
        limit=limit, ks=list(ks), keep_history=keep_history, baseline_options=asdict(options),
        talkplay=talkplay, hybrids=hybrids))


@app.command("evaluate")
def evaluate(
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for results and predictions.")],
    systems: Annotated[str, typer.Option(
        help="Comma-separated: bm25, dense, cooc, clap, popularity, talkplay, talkplay-paper, "
             "talkplay-beam, talkplay-hybrid (and its ablations talkplay-hybrid-no-lm|bm25|dense|"
             "cooc|head|named|model; no-model: the retrieval components fused with weights fit on valid), "
             "talkplay-hybrid-text (the hybrid plus the model's text score of names), rrf (untuned fusion of bm25, dense, cooc, talkplay-beam), rrf-text.")
    ] = "bm25,dense,cooc,clap,popularity",
    run: Annotated[Path | None, typer.Option(
        "--run", "--run-dir", help="Fine-tuned run directory (talkplay systems). `--run-dir` "
                                   "works under torchrun, which takes `--run` for its own "
                                   "`--run-path`.")] = None,
    protocol: Annotated[str, typer.Option(help="auto, paper or cpcd (auto: cpcd for CPCD imports).")] = "auto",
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many test conversations.")] = None,
    ks: Annotated[str, typer.Option(help="Hit@K cut-offs, comma-separated.")] = KS,
    split: Annotated[str, typer.Option(help="Conversation split to evaluate.")] = "test",
    text_model: Annotated[str, typer.Option(
        help="Text encoder of dense / tagclap (and the hybrids' dense retriever): minilm, a "
             "sentence-transformers name, or a folder from `talkplay fit-retriever`.")] = "minilm",
    clap_model: Annotated[str, typer.Option(
        help="tagclap (offline substitute) or a transformers ClapModel name/path.")] = "tagclap",
    decay: Annotated[float, typer.Option(help="Query weight decay per user turn of age.")] = 0.5,
    track_weight: Annotated[float, typer.Option(help="Query weight of tracks in the history.")] = 0.5,
    keep_history: Annotated[bool, typer.Option(
        help="(paper protocol) allow recommending tracks already in the history.")] = False,
    fit_limit: Annotated[int | None, typer.Option(
        min=1, help="talkplay-hybrid: valid conversations its weights are fit on (default: all).")] = None,
    max_prompt_tokens: Annotated[int | None, typer.Option(
        min=16, help="TalkPlay systems: longest prompt before the oldest turns are dropped "
                     "(default: the training context minus 64).")] = None,
    refit: Annotated[bool, typer.Option(
        help="talkplay-hybrid: fit the weights again even if RUN/hybrid.json has them.")] = False,
    fit_method: Annotated[str, typer.Option(
        help="talkplay-hybrid: how its weights are fit on valid: softmax (listwise likelihood "
             "of the gold tracks in each pool) or ascent (coordinate ascent on MRR).")] = "softmax",
    quantize: QuantizeOpt = "none",
    reply_guard: Annotated[bool, typer.Option(
        help="--replies: TalkPlay replies may not use the catalog's tag, decade and year words "
             "that are false of the recommended track (--no-reply-guard: the model alone).")] = True,
    replies: Annotated[int, typer.Option(
        min=0, help="Also generate each system's reply on the first N targets and check its "
                    "claims against the recommended track (OUT/replies.json, replies.md); "
                    "baselines answer from a template. 0: off.")] = 0,
) -> None:
    """Evaluate systems on the test conversations; write results.json/.md, a plot and predictions."""
    quiet_libraries()  # before the imports too: faiss logs while it is imported
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.report import comparison_table, main_table, turn_table
    from talkplay.evaluate.run import evaluate as run_evaluate
    from talkplay.evaluate.shards import start

    quiet_libraries()  # after the baselines import: bm25s sets its log level on import
    names = [s.strip() for s in systems.split(",") if s.strip()]
    known = [*SYSTEMS, *TALKPLAY_MODES, *COMPOSITES]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        fail(f"unknown system(s) {unknown}; choose from {known}")
    from talkplay.evaluate.hybrid import FIT_METHODS

    if fit_method not in FIT_METHODS:
        fail(f"--fit-method must be one of {', '.join(FIT_METHODS)}, got {fit_method!r}")
    try:
        cutoffs = tuple(int(k) for k in ks.split(","))
        if min(cutoffs) < 1:
            raise ValueError
    except ValueError:
        fail(f"--ks must be positive integers separated by commas, got {ks!r}")
    rank, _ = start()  # several processes (torchrun / accelerate launch): shards of targets
    try:
        ds = read_dataset(data)
        options = BaselineOptions(decay=decay, track_weight=track_weight, text_model=text_model,
                                  clap_model=clap_model)
        built, build_seconds = build_systems(ds, names, run, options, keep_history,
                                             protocol=protocol, fit_limit=fit_limit, refit=refit,
                                             fit_method=fit_method,
                                             max_prompt_tokens=max_prompt_tokens,
                                             quantize=quantize)
        with progress_bar(disable=rank != 0) as bar:
            results = run_evaluate(ds, built, protocol=protocol, ks=cutoffs, limit=limit,
                                   out_dir=out, progress=task_per_key(bar), split=split,
                                   exclude_history=not keep_history,
                                   system_info={n: {"build_seconds": s}
                                                for n, s in build_seconds.items()})
        if rank != 0:  # the first process writes and prints the merged results
            return
        write_manifest(out, data=data, run=run, systems=built, protocol=protocol,
                       resolved=results["protocol"], split=split, limit=limit, ks=cutoffs,
                       options=options, keep_history=keep_history)
        checked = (check_replies(ds, built, run, out, replies, protocol=protocol, split=split,
                                 keep_history=keep_history, max_prompt_tokens=max_prompt_tokens,
                                 reply_guard=reply_guard, quantize=quantize)
                   if replies else None)
    except (DataError, ValueError) as e:
        fail(str(e))
    console.print(Markdown(f"**{results['protocol']} protocol**, {results['targets']} targets "
                           f"in {results['conversations']} conversations (micro average)"))
    console.print(Markdown(main_table(results, "micro")))
    console.print(Markdown("MRR by turn index"))
    console.print(Markdown(turn_table(results)))
    if results.get("comparisons"):
        console.print(Markdown("Paired bootstrap over conversations (first system minus each other)"))
        console.print(Markdown(comparison_table(results)))
    if checked:
        console.print(Markdown(f"Replies on the first {replies} targets (claims checked against "
                               "the recommended track)"))
        console.print(Markdown(replies_table(checked)))
    console.print(f"wrote {out}/results.json, results.md, manifest.json, mrr_by_turn.png and "
                  "predictions" + (", replies.json and replies.md" if checked else ""))
