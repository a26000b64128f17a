"""Run recommenders over a protocol's targets, score them and write predictions and reports.

Per target the recommender gets the history and the excluded tracks and returns a ranking;
excluded tracks (and, with clusters, every track of an excluded track's cluster) are dropped,
the ranking is collapsed to one track per cluster and cut at ``max(ks)``, then scored.

A system may also have an optional ``prepare(histories: list[list[Message]]) -> None`` method
(not part of the Recommender protocol): it is called once with every history before ranking so
that encoders can batch their work (a MiniLM encode of one text costs ~10x a batched one on CPU).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from talkplay.data.dataset import Dataset
from talkplay.evaluate.metrics import KS, ScoredTarget, paired_bootstrap, summarize, target_metrics
from talkplay.evaluate.protocols import Target, build_targets, cluster_map, resolve_protocol
from talkplay.evaluate.report import token_matching, write_report
from talkplay.io import atomic_path
from talkplay.recommend.protocol import Recommender

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
"""progress(system_name, targets_done, targets_total)."""


def clean_ranking(track_ids: list[str], exclude: set[str], cluster_of: dict[str, str],
                  k: int) -> list[str]:
    """Drop excluded tracks (cluster-wise), keep the first track per cluster, cut at ``k``.

    Args:
        track_ids: the recommender's ranking, best first.
        exclude: track ids that must not count.
        cluster_of: track id -> cluster id (may be empty).
        k: length of the result.
    Returns:
        Track ids, unique per cluster, best first.
    """
    banned = {cluster_of.get(t, t) for t in exclude}
    seen: set[str] = set()
    out: list[str] = []
    for t in track_ids:
        c = cluster_of.get(t, t)
        if c in banned or c in seen:
            continue
        seen.add(c)
        out.append(t)
        if len(out) >= k:
            break
    return out


def run_system(system: Recommender, targets: list[Target], *, ks: tuple[int, ...],
               cluster_of: dict[str, str], progress: Progress | None = None,
               label: str | None = None
               ) -> tuple[list[ScoredTarget], list[list[str]], list[dict], float]:
    """Rank and score every target with one system (``label`` names it in progress calls).

    Returns:
        (scored targets, cleaned rankings, the Recommendation.info dicts, seconds spent).
    """
    max_k = max(ks)
    scored, rankings, infos = [], [], []
    t0 = time.perf_counter()
    prepare = getattr(system, "prepare", None)
    if callable(prepare):
        prepare([t.history for t in targets])
    for n, target in enumerate(targets, start=1):
        # Ask for extra tracks: cluster duplicates and excluded clusters are dropped afterwards.
        want = max_k + len(target.exclude) + (max_k if cluster_of else 0)
        rec = system.recommend(target.history, k=want, exclude=set(target.exclude))
        ranking = clean_ranking([s.track_id for s in rec.tracks], target.exclude, cluster_of, max_k)
        values = target_metrics(predictions=ranking, gold=target.gold, ks=ks,
                                cluster_of=cluster_of or None)
        scored.append(ScoredTarget(target.conversation_id, target.turn_index, values, target.cold))
        rankings.append(ranking)
        infos.append(rec.info)
        if progress:
            progress(label or system.name, n, len(targets))
    return scored, rankings, infos, time.perf_counter() - t0


def write_predictions(path: Path, targets: list[Target], rankings: list[list[str]]) -> None:
    """One JSON line per target in the CPCD model-output format (plus the gold, for paper runs).

    ``{"docid": "<dialog_id>:<turn_index>", "neighbor": [{"docid": "<track_id>"}, ...]}``
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for target, ranking in zip(targets, rankings, strict=True):
            f.write(json.dumps({"docid": target.docid,
                                "neighbor": [{"docid": t} for t in ranking]}) + "\n")


def evaluate(dataset: Dataset, systems: dict[str, Recommender], *, protocol: str = "auto",
             ks: tuple[int, ...] = KS, limit: int | None = None, out_dir: Path | None = None,
             progress: Progress | None = None, split: str = "test",
             exclude_history: bool = True, system_info: dict[str, dict] | None = None) -> dict:
    """Evaluate each system under one protocol; write files to ``out_dir`` when given.

    Args:
        dataset: the dataset (test conversations are evaluated).
        systems: name -> Recommender.
        protocol: "paper", "cpcd" or "auto" (cpcd for CPCD imports).
        ks: Hit@K cut-offs; rankings are cut at max(ks).
        limit: at most this many conversations.
        out_dir: where results.json, results.md, mrr_by_turn.png and predictions go.
        progress: called after each target.
        split: conversation split to evaluate.
        exclude_history: (paper protocol) exclude tracks already played.
        system_info: extra fields per system name for results.json (e.g. build seconds).
    Returns:
        The results dict written to results.json.

    Under ``torchrun``/``accelerate launch`` (``shards.start`` called first) each process ranks
    a shard of the targets and every process returns the merged results; only the first writes.
    """
    from talkplay.evaluate.shards import run_sharded, world

    if world()[0] != 0:
        out_dir = None
    ks = tuple(sorted(set(ks)))
    name = resolve_protocol(dataset, protocol)
    targets = build_targets(dataset, name, split=split, limit=limit, exclude_history=exclude_history)
    if not targets:
        raise ValueError(f"no {name} targets in the {split!r} conversations of the dataset")
    clusters = cluster_map(dataset)
    results: dict = {"protocol": name, "split": split, "ks": list(ks), "limit": limit,
                     "dataset": str(dataset.root) if dataset.root else None,
                     "source": dataset.manifest.get("source"), "targets": len(targets),
                     "conversations": len({t.conversation_id for t in targets}),
                     "clusters": bool(clusters),
                     "dropped_assistant_messages": sum(t.dropped_assistant for t in targets),
                     "processes": world()[1], "systems": {}}
    tracks = dataset.track_index()
    all_scored: dict[str, list[ScoredTarget]] = {}
    for sys_name, system in systems.items():
        scored, rankings, infos, seconds = run_sharded(system, targets, ks=ks, cluster_of=clusters,
                                                       progress=progress, label=sys_name)
        all_scored[sys_name] = scored
        summary = summarize(targets=scored)
        entry = {"micro": summary.micro, "macro": summary.macro,
                 "by_turn": {str(k): v for k, v in summary.by_turn.items()},
                 "warm": summary.warm, "cold": summary.cold, "counts": summary.counts,
                 "seconds": round(seconds, 3),
                 "targets_per_second": round(len(targets) / seconds, 2) if seconds > 0 else None,
                 "description": getattr(system, "description", sys_name),
                 **(system_info or {}).get(sys_name, {})}
        cuts = [bool(i["prompt_cut"]) for i in infos if "prompt_cut" in i]
        if cuts:  # TalkPlay: how often the history did not fit the prompt budget
            entry["prompt_cut_share"] = round(sum(cuts) / len(cuts), 4)
        matching = token_matching(infos, tracks)
        if matching:
            entry["token_matching"] = matching
        results["systems"][sys_name] = entry
        log.info("%s: MRR %.4f over %d targets (%.1f targets/s)", sys_name,
                 summary.micro.get("mrr", 0.0), len(targets), entry["targets_per_second"] or 0)
        if out_dir is not None:
            suffix = "cpcd.jsonl" if name == "cpcd" else "predictions.jsonl"
            write_predictions(Path(out_dir) / f"{sys_name}.{suffix}", targets, rankings)
    # Paired bootstrap on the same targets: the first system against each other one, and every
    # other system against bm25 when it was evaluated; MRR, and Hit@10 when 10 is a cut-off.
    names = list(all_scored)
    pairs = [(names[0], other) for other in names[1:]]
    if names[0] != "bm25" and "bm25" in names:
        pairs += [(n, "bm25") for n in names[1:] if n != "bm25"]
    metrics = ["mrr"] + (["hit@10"] if 10 in ks else [])
    results["comparisons"] = [
        {"a": a, "b": b, "metric": metric,
         **paired_bootstrap(all_scored[a], all_scored[b], metric=metric)}
        for a, b in pairs for metric in metrics]
    if out_dir is not None:
        write_report(results, Path(out_dir))
    return results
