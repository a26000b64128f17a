"""Claim: how the data stages grow with the number of playlists (time, throughput, peak memory),
on MPD-shaped slices (``data.mpd_synth``), so that a run on the real Million Playlist Dataset can
be planned.

    .venv/bin/python benchmarks/scale.py [--playlists 10000,100000,1000000]
        [--stages generate,import,item2vec] [--item2vec-epochs 5] [--work DIR] [--out DIR]

For each N: ``generate`` writes N playlists as MPD slice files (1,000 per file, seed 0; kept in
``--work`` and reused when already there), ``import`` runs ``talkplay data import mpd`` on them
(1,000 test and 1,000 valid playlists) into a fresh directory, ``item2vec`` trains
``embed.item2vec.Item2Vec`` over the imported training playlists (``--item2vec-epochs``, up to
``--item2vec-max`` playlists), ``catalog`` builds the lookup index (``CodeIndex``) and the
decoding trie (``CatalogTrie``) over as many tracks as the import holds (random codes, K = 1024
per modality, as ``benchmarks/lookup.py``). Each stage runs in its own child
process, so its peak RSS (``wait4``'s ru_maxrss) is its own. Prints one row per (N, stage): wall
seconds, playlists and entries per second, peak RSS, and the growth of time and memory from the
previous N; writes ``OUT/scale.json`` and ``OUT/scale.png`` (log-log). Stages beyond item2vec
(text embeddings, K-means, training, evaluation) are not in this report yet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

BIN = Path(sys.executable).parent
console = Console(width=140)
STAGES = ("generate", "import", "item2vec", "catalog")
CATALOG = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from lookup import make_catalog
from talkplay.recommend.constraints import CatalogTrie
from talkplay.tokenize.lookup import CodeIndex
n = json.loads(open(sys.argv[1]).read())["counts"]["tracks"]
codes, centroids, popularity = make_catalog(n, 1024, 64, 0.6, 0.01, 0)
t = time.perf_counter()
index, trie = CodeIndex(codes, centroids, popularity), CatalogTrie(codes)
print(n, time.perf_counter() - t)
"""
ITEM2VEC = """
import sys
from talkplay.data.dataset import read_dataset
from talkplay.data.splits import training_playlists
from talkplay.embed.item2vec import Item2Vec
ids, vecs = Item2Vec(epochs=int(sys.argv[2])).fit(training_playlists(read_dataset(sys.argv[1])))
print(len(ids))
"""


def run_child(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in GB of that process tree's largest)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024 ** 2  # KiB on Linux


def entries(folder: Path, imported: Path) -> int:
    """Playlist entries in the slices: the import's manifest counts them; without an import,
    each slice file's playlists' num_tracks (reading every slice again: 17 GB at 1M)."""
    manifest = imported / "manifest.json"
    if manifest.exists():
        return int(json.loads(manifest.read_text())["counts"]["playlist_entries"])
    total = 0
    for f in sorted(folder.glob("mpd.slice.*.json")):
        total += sum(p["num_tracks"] for p in json.loads(f.read_text())["playlists"])
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--playlists", default="10000,100000", help="sizes, comma-separated")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"of {', '.join(STAGES)}")
    ap.add_argument("--work", type=Path, default=Path("scale-work"),
                    help="where slices and imports go (slices are reused)")
    ap.add_argument("--out", type=Path, default=Path("scale-results"))
    ap.add_argument("--item2vec-epochs", type=int, default=5,
                    help="item2vec epochs (dim 128, window 20, one worker thread; the default "
                         "training uses 20: time grows linearly with epochs)")
    ap.add_argument("--item2vec-max", type=int, default=100_000,
                    help="largest N that runs item2vec")
    args = ap.parse_args()
    sizes = [int(x) for x in args.playlists.split(",") if x.strip()]
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if not sizes or min(sizes) < 3000 or set(stages) - set(STAGES):
        ap.error(f"--playlists at least 3000 each; --stages of {STAGES}")
    rows = []
    for n in sizes:
        slices = args.work / f"mpd-{n}"
        for stage in stages:
            if stage == "generate":
                cmd = [sys.executable, "-c",
                       "import sys; from talkplay.data.mpd_synth import write_mpd_slices; "
                       f"write_mpd_slices(sys.argv[1], {n}, seed=0)", str(slices)]
                if (slices / f"mpd.slice.{(n - 1) // 1000 * 1000}-{n - 1}.json").exists():
                    console.print(f"{n}: slices already in {slices} (generate not timed)")
                    continue
            elif stage == "item2vec":
                if n > args.item2vec_max:
                    console.print(f"{n}: item2vec skipped (--item2vec-max {args.item2vec_max})")
                    continue
                cmd = [sys.executable, "-c", ITEM2VEC, str(args.work / f"import-{n}"),
                       str(args.item2vec_epochs)]
            elif stage == "catalog":
                cmd = [sys.executable, "-c", CATALOG, str(args.work / f"import-{n}" / "manifest.json"),
                       str(Path(__file__).parent)]
            else:
                out = args.work / f"import-{n}"
                shutil.rmtree(out, ignore_errors=True)
                cmd = [str(BIN / "talkplay"), "data", "import", "mpd", str(slices), "--out",
                       str(out), "--test-size", "1000", "--valid-size", "1000"]
            console.print(f"{n}: {stage} ...")
            wall, rss = run_child(cmd)
            rows.append({"playlists": n, "stage": stage, "seconds": round(wall, 1),
                         "peak_rss_gb": round(rss, 2)})
        n_entries = entries(slices, args.work / f"import-{n}")
        for r in rows:
            if r["playlists"] == n:
                r["entries"] = n_entries
    table = Table(title=f"data stages on MPD-shaped slices ({os.cpu_count()} CPUs; item2vec: "
                        f"{args.item2vec_epochs} epochs)")
    for col in ("playlists", "entries", "stage", "seconds", "playlists/s", "entries/s",
                "peak RSS GB", "time x", "memory x"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    last: dict[str, dict] = {}
    for r in rows:
        prev = last.get(r["stage"])
        table.add_row(f"{r['playlists']:,}", f"{r['entries']:,}", r["stage"], f"{r['seconds']:.1f}",
                      f"{r['playlists'] / r['seconds']:,.0f}", f"{r['entries'] / r['seconds']:,.0f}",
                      f"{r['peak_rss_gb']:.2f}",
                      f"{r['seconds'] / prev['seconds']:.1f}x" if prev else "",
                      f"{r['peak_rss_gb'] / prev['peak_rss_gb']:.1f}x" if prev else "")
        last[r["stage"]] = r
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(rows, indent=1))
    plot(rows, args.out / "scale.png")
    console.print(f"wrote {args.out / 'scale.json'} and scale.png; 1-min load average "
                  f"{os.getloadavg()[0]:.1f}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for stage in dict.fromkeys(r["stage"] for r in rows):
        mine = [r for r in rows if r["stage"] == stage]
        xs = [r["playlists"] for r in mine]
        a.plot(xs, [r["seconds"] for r in mine], "o-", label=stage)
        b.plot(xs, [r["peak_rss_gb"] for r in mine], "o-", label=stage)
    for ax, what in ((a, "wall seconds"), (b, "peak RSS (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("playlists")
        ax.set_ylabel(what)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
