"""Reports: results.json, a markdown table, MRR by turn index (table and PNG), warm/cold, and
TalkPlay's token-matching analysis.

Token matching reads these keys of ``Recommendation.info`` (a system that does not set
``codes`` gets no analysis):

- ``info["codes"]``: list of generated item code tuples, each a list of 5 ints (one cluster id
  per modality, -1 = missing), in generation order.
- ``info["exact_match"]``: list of bools, parallel to ``codes``: the tuple equals the codes of
  a catalog item (the paper's exact lookup succeeded).
- ``info["matched_ids"]`` (optional): list of track id or None, parallel to ``codes``: the
  catalog item an exact tuple matched.

Reported: ``generated`` (tuples), ``exact_share`` (share matching a catalog item exactly), and
with ``matched_ids`` the matches to warm / cold items divided by the number of warm / cold
items in the catalog (``warm_rate``, ``cold_rate``; the paper's count-normalised comparison),
plus the share of warm / cold items ever matched.
"""

from __future__ import annotations

import logging
from pathlib import Path

from talkplay.data.schema import Track
from talkplay.io import atomic_path, write_json

log = logging.getLogger(__name__)


def token_matching(infos: list[dict], tracks: dict[str, Track]) -> dict | None:
    """Aggregate the token-matching diagnostics of one system (None when it reports none).

    Args:
        infos: the ``Recommendation.info`` of every target.
        tracks: catalog by id (for warm / cold).
    Returns:
        {"generated", "exact", "exact_share", ["warm_rate", "cold_rate", "warm_items_matched",
        "cold_items_matched", "warm_items", "cold_items"]} or None.
    """
    if not any("codes" in info for info in infos):
        return None
    generated = exact = 0
    matched: list[str] = []
    for info in infos:
        codes = info.get("codes") or []
        flags = info.get("exact_match") or [False] * len(codes)
        generated += len(codes)
        exact += sum(bool(f) for f in flags)
        matched += [m for m in (info.get("matched_ids") or []) if m]
    out = {"generated": generated, "exact": exact,
           "exact_share": exact / generated if generated else 0.0}
    if any("matched_ids" in info for info in infos):
        n_cold = sum(t.cold for t in tracks.values())
        n_warm = len(tracks) - n_cold
        warm_hits = [m for m in matched if m in tracks and not tracks[m].cold]
        cold_hits = [m for m in matched if m in tracks and tracks[m].cold]
        out.update({
            "warm_items": n_warm, "cold_items": n_cold,
            "warm_rate": len(warm_hits) / n_warm if n_warm else 0.0,
            "cold_rate": len(cold_hits) / n_cold if n_cold else 0.0,
            "warm_items_matched": len(set(warm_hits)) / n_warm if n_warm else 0.0,
            "cold_items_matched": len(set(cold_hits)) / n_cold if n_cold else 0.0,
        })
    return out


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def main_table(results: dict, average: str = "micro") -> str:
    """Markdown: one row per system, MRR and Hit@K columns, ``average`` = micro or macro."""
    ks = results["ks"]
    head = "| system | MRR | " + " | ".join(f"Hit@{k}" for k in ks) + " | targets/s |"
    rows = [head, "|" + "---|" * (len(ks) + 3)]
    for name, r in results["systems"].items():
        m = r[average]
        rows.append(f"| {name} | {_f(m.get('mrr'))} | "
                    + " | ".join(_f(m.get(f"hit@{k}")) for k in ks)
                    + f" | {r.get('targets_per_second') or '-'} |")
    return "\n".join(rows)


def turn_table(results: dict) -> str:
    """Markdown: MRR by turn index (0-based), one column per system, target counts last."""
    names = list(results["systems"])
    turns = sorted({int(t) for r in results["systems"].values() for t in r["by_turn"]})
    rows = ["| turn | " + " | ".join(names) + " | targets |", "|" + "---|" * (len(names) + 2)]
    first = results["systems"][names[0]]["by_turn"] if names else {}
    for t in turns:
        vals = [_f(results["systems"][n]["by_turn"].get(str(t), {}).get("mrr")) for n in names]
        count = int(first.get(str(t), {}).get("count", 0))
        rows.append(f"| {t} | " + " | ".join(vals) + f" | {count} |")
    return "\n".join(rows)


def warm_cold_table(results: dict) -> str:
    """Markdown: MRR and Hit@10 (or the middle K) for warm and cold targets per system."""
    ks = results["ks"]
    k = 10 if 10 in ks else ks[len(ks) // 2]
    rows = [f"| system | warm MRR | warm Hit@{k} | cold MRR | cold Hit@{k} |", "|---|---|---|---|---|"]
    for name, r in results["systems"].items():
        w, c = r["warm"], r["cold"]
        rows.append(f"| {name} | {_f(w.get('mrr'))} | {_f(w.get(f'hit@{k}'))} | "
                    f"{_f(c.get('mrr'))} | {_f(c.get(f'hit@{k}'))} |")
    return "\n".join(rows)


def comparison_table(results: dict) -> str:
    """Markdown: paired differences (first system minus each other, each minus bm25) with 95%
    intervals."""
    rows = ["| A - B | metric | difference | 95% interval | resamples with A ahead |",
            "|---|---|---|---|---|"]
    for c in results.get("comparisons", []):
        rows.append(f"| {c['a']} - {c['b']} | {c.get('metric', 'mrr')} | {c['diff']:+.4f} | "
                    f"[{c['low']:+.4f}, {c['high']:+.4f}] | {c['p_a_better']:.3f} |")
    return "\n".join(rows)


def markdown(results: dict) -> str:
    """The whole report as markdown."""
    counts = next(iter(results["systems"].values()))["counts"] if results["systems"] else {}
    parts = [
        f"# Evaluation ({results['protocol']} protocol)",
        f"Dataset: {results.get('dataset')} ({results.get('source')}); split {results['split']}; "
        f"{results['targets']} targets in {results['conversations']} conversations"
        + ("; tracks of one cluster count once" if results.get("clusters") else "") + ".",
        "## Per turn (micro average)", main_table(results, "micro"),
        "## Per conversation (macro average)", main_table(results, "macro"),
        "## MRR by turn index", turn_table(results), "![MRR by turn](mrr_by_turn.png)",
        f"## Warm / cold targets ({counts.get('warm_targets', 0)} warm, "
        f"{counts.get('cold_targets', 0)} cold)", warm_cold_table(results),
    ]
    if results.get("comparisons"):
        parts += ["## Paired comparison (bootstrap over conversations, 2,000 resamples)",
                  comparison_table(results)]
    matching = {n: r["token_matching"] for n, r in results["systems"].items() if "token_matching" in r}
    if matching:
        rows = ["| system | generated | exact share | warm rate | cold rate |", "|---|---|---|---|---|"]
        for n, m in matching.items():
            rows.append(f"| {n} | {m['generated']} | {_f(m['exact_share'])} | "
                        f"{_f(m.get('warm_rate'))} | {_f(m.get('cold_rate'))} |")
        parts += ["## Token matching (generated tuples vs catalog)", "\n".join(rows)]
    cuts = {n: r["prompt_cut_share"] for n, r in results["systems"].items() if "prompt_cut_share" in r}
    notes = [f"- {n}: {_f(v)} of the prompts dropped the oldest turns to fit the prompt budget"
             for n, v in cuts.items()]
    if results.get("dropped_assistant_messages"):
        notes.append(f"- {results['dropped_assistant_messages']} assistant messages that named the "
                     "next target track were removed from the histories (every system alike)")
    if notes:
        parts += ["## Inputs", "\n".join(notes)]
    parts += ["## Systems", "\n".join(f"- {n}: {r['description']}"
                                      for n, r in results["systems"].items())]
    return "\n\n".join(parts) + "\n"


def plot_mrr_by_turn(results: dict, path: Path) -> None:
    """Line plot of MRR against turn index, one line per system (the paper's Figure 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, r in results["systems"].items():
        turns = sorted(int(t) for t in r["by_turn"])
        ax.plot(turns, [r["by_turn"][str(t)]["mrr"] for t in turns], marker="o", label=name)
    ax.set_xlabel("turn index (0-based)")
    ax.set_ylabel("MRR")
    ax.set_title(f"MRR by turn ({results['protocol']} protocol)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_report(results: dict, out_dir: Path) -> None:
    """Write results.json, results.md and mrr_by_turn.png into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", results)
    with atomic_path(out_dir / "results.md") as tmp:
        tmp.write_text(markdown(results))
    plot_mrr_by_turn(results, out_dir / "mrr_by_turn.png")
    log.info("wrote %s/results.{json,md} and mrr_by_turn.png", out_dir)
