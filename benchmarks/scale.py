"""Claim: how the data stages grow with the number of playlists (time, throughput, peak memory),
on MPD-shaped slices (``data.mpd_synth``), so that a run on the real Million Playlist Dataset can
be planned.

    .venv/bin/python benchmarks/scale.py [--playlists 10000,100000,1000000]
        [--stages generate,import,read,item2vec,kmeans,sequences,catalog] [--item2vec-epochs 5]
        [--item2vec-workers 1] [--item2vec-max 100000] [--work DIR] [--out DIR]

For each N: ``generate`` writes N playlists as MPD slice files (1,000 per file, seed 0; kept in
``--work`` and reused when already there), ``import`` runs ``talkplay data import mpd`` on them
(1,000 test and 1,000 valid playlists) into a fresh directory, ``item2vec`` trains
``embed.item2vec.Item2Vec`` over the imported training playlists (``--item2vec-epochs`` and
``--item2vec-workers``, up to ``--item2vec-max`` playlists), ``read`` loads the import with
``read_dataset`` (what every later stage does first; ``read-plain`` is the same with every
playlist entry a fresh string, as ``to_pylist`` gives, the baseline of the same invocation),
``text`` embeds the metadata text of the first ``--text-max`` tracks with the packaged MiniLM
in resumable chunks of 1,024 (``embed.build.encode_resumable``; the row is the whole process,
reading the import and loading the model included: a subset, said so in its label),
``kmeans`` clusters as many random unit vectors as the import has tracks (d = 128,
item2vec's width, and d = 384, MiniLM's; K = 1024, 25 iterations, as ``talkplay tokenize``),
``sequences`` builds the training stream
over the import's training playlists (``train.data``: random codes as ``catalog``, the tiny
model's SmolLM2 tokenizer, context 1,024, batches of 16) and draws ``--batches`` batches
(``sequences-eager`` renders every playlist sample of the epoch at its start, as the previous
version did: the baseline, up to ``--eager-max`` playlists), ``evaluate`` builds the
``cooc`` baseline over the training playlists (with its BM25 index over every track) and asks
it for 100 tracks for each of ``--queries`` test playlists (its name as the request, its first
3 tracks as accepted music; build time and median / p95 query time), ``catalog`` builds the
lookup index (``CodeIndex``) and the decoding trie (``CatalogTrie``) over as many tracks as
the import holds (random codes, K = 1024 per modality, as ``benchmarks/lookup.py``). Each
stage runs in its own child process, so its peak RSS (``wait4``'s ru_maxrss) is its own.
Prints one row per (N, stage): wall seconds, playlists and entries per second, peak RSS,
and the growth of time and memory from the previous N; writes ``OUT/scale.json`` (after every stage) and ``OUT/scale.png`` (log-log).
Training steps and a TalkPlay model's evaluation are not in this report (their cost per step
and per turn does not grow with the number of playlists).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from talkplay.io import write_json

BIN = Path(sys.executable).parent
console = Console(width=140)
STAGES = ("generate", "import", "read-plain", "read", "item2vec", "text", "kmeans",
          "sequences-eager", "sequences", "catalog", "evaluate")
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
READ = """
import sys
from talkplay.data.dataset import read_dataset
ds = read_dataset(sys.argv[1])
print(len(ds.playlists), sum(map(len, (p.track_ids for p in ds.playlists))))
"""
READ_PLAIN = """
import sys
import pyarrow.parquet as pq
import talkplay.data.dataset as d
from talkplay.data.schema import Playlist
def plain(file, track_ids):
    return [Playlist(**row) for row in pq.read_table(file).to_pylist()]
d._read_playlists = plain
ds = d.read_dataset(sys.argv[1])
print(len(ds.playlists), sum(map(len, (p.track_ids for p in ds.playlists))))
"""
KMEANS = """
import json, sys
import numpy as np
from talkplay.config import TokenizerConfig
from talkplay.linalg import normalise
from talkplay.tokenize.kmeans import spherical_kmeans
n = json.loads(open(sys.argv[1]).read())["counts"]["tracks"]
cfg = TokenizerConfig()
x = normalise(np.random.default_rng(0).standard_normal((n, int(sys.argv[2])), dtype=np.float32))
centroids, assign = spherical_kmeans(x, min(cfg.k, n), niter=cfg.niter, seed=cfg.seed)
print(n, len(np.unique(assign)))
"""
SEQUENCES = """
import sys
sys.path.insert(0, sys.argv[2])
from lookup import make_catalog
import talkplay.train.data as td
from talkplay.config import profile
from talkplay.data.dataset import read_dataset
from talkplay.lm.base import load_base
from talkplay.lm.vocab import expand_vocabulary
from talkplay.tokenize import grammar
from talkplay.tokenize.codebook import Codebook
ds = read_dataset(sys.argv[1])
codes, centroids, _ = make_catalog(len(ds.tracks), 1024, 8, 0.6, 0.0, 0)
cb = Codebook([t.id for t in ds.tracks], codes, centroids)
model, tok = load_base(profile("tiny").model)
r = td.Renderer(tok, cb, expand_vocabulary(model, tok, grammar.vocabulary(cb.k)), 1024)
if sys.argv[3] == "eager":  # every playlist sample of the epoch rendered when it is drawn up
    cuts = td.playlist_samples
    td.playlist_samples = lambda split, n, r, rng: td.render(split, r, cuts(split, n, r, rng))
train, _ = td.build_splits(ds, r)
data = td.TrainData(train, r, batch_size=16, playlist_share=0.5, seed=0)
tokens = sum(len(s.ids) for _ in range(int(sys.argv[4])) for s in data.next_batch())
print(len(train.playlists), tokens)
"""
TEXT = """
import shutil, sys, tempfile, time
from pathlib import Path
from talkplay.data.dataset import read_dataset
from talkplay.embed import inputs
from talkplay.embed.build import encode_resumable
from talkplay.embed.registry import build_encoder
from talkplay.config import EmbedConfig
ds = read_dataset(sys.argv[1])
ids, texts = inputs.text_inputs(ds, "metadata")
cfg = EmbedConfig(device="cpu")
encoder = build_encoder("metadata", "minilm", cfg)
part = Path(tempfile.mkdtemp())
t = time.perf_counter()
encode_resumable(encoder, texts[:int(sys.argv[2])], part, batch_size=cfg.batch_size,
                 chunk_size=1024, advance=lambda n: None)
took = time.perf_counter() - t
shutil.rmtree(part)
print(len(texts), min(len(texts), int(sys.argv[2])), took)
"""
EVALUATE = """
import sys, time
import numpy as np
from talkplay.data.dataset import read_dataset
from talkplay.data.schema import Message
from talkplay.evaluate.baselines import SYSTEMS
ds = read_dataset(sys.argv[1])
t = time.perf_counter()
cooc = SYSTEMS["cooc"](ds)  # indexes BM25 over every track too (its back-off)
built = time.perf_counter() - t
took = []
for p in [p for p in ds.playlists if p.split == "test"][:int(sys.argv[2])]:
    seeds = p.track_ids[:3]
    history = [Message("user", p.name or "more like these"), *(Message("music", s) for s in seeds)]
    t = time.perf_counter()
    cooc.recommend(history, k=100, exclude=set(seeds))
    took.append(time.perf_counter() - t)
print(built, float(np.median(took)), float(np.percentile(took, 95)), len(took))
"""
ITEM2VEC = """
import sys
from talkplay.data.dataset import read_dataset
from talkplay.data.splits import training_playlists
from talkplay.embed.item2vec import Item2Vec
ids, vecs = Item2Vec(epochs=int(sys.argv[2]), workers=int(sys.argv[3])).fit(
    training_playlists(read_dataset(sys.argv[1])))
print(len(ids))
"""


def run_child(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall seconds, peak RSS in GB of that process tree's largest, its
    standard output). Output goes to files, not pipes: a chatty child cannot block on a full
    pipe while we wait for it."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read().decode()[-2000:]}")
        return wall, usage.ru_maxrss / 1024 ** 2, out.read().decode()  # ru_maxrss: KiB


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
                    help="item2vec epochs (dim 128, window 20, --item2vec-workers threads; the "
                         "default training uses 20: time grows linearly with epochs)")
    ap.add_argument("--item2vec-workers", type=int, default=1,
                    help="gensim worker threads (1: the reproducible default)")
    ap.add_argument("--item2vec-max", type=int, default=100_000,
                    help="largest N that runs item2vec")
    ap.add_argument("--text-max", type=int, default=4096,
                    help="tracks whose metadata text the text stage embeds (MiniLM, CPU)")
    ap.add_argument("--queries", type=int, default=50,
                    help="test playlists the evaluate stage asks cooc (with its BM25 back-off)")
    ap.add_argument("--batches", type=int, default=50,
                    help="training batches the sequences stages draw")
    ap.add_argument("--eager-max", type=int, default=100_000,
                    help="largest N that runs sequences-eager")
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
                       str(args.item2vec_epochs), str(args.item2vec_workers)]
            elif stage in ("read", "read-plain"):
                cmd = [sys.executable, "-c", READ if stage == "read" else READ_PLAIN,
                       str(args.work / f"import-{n}")]
            elif stage == "text":
                cmd = [sys.executable, "-c", TEXT, str(args.work / f"import-{n}"),
                       str(args.text_max)]
            elif stage == "evaluate":
                cmd = [sys.executable, "-c", EVALUATE, str(args.work / f"import-{n}"),
                       str(args.queries)]
            elif stage == "kmeans":
                for dim in (128, 384):
                    console.print(f"{n}: kmeans d={dim} ...")
                    wall, rss, _ = run_child([sys.executable, "-c", KMEANS,
                                              str(args.work / f"import-{n}" / "manifest.json"),
                                              str(dim)])
                    rows.append({"playlists": n, "stage": f"kmeans d={dim}",
                                 "seconds": round(wall, 1), "peak_rss_gb": round(rss, 2)})
                    save(rows, args.out)
                continue
            elif stage in ("sequences", "sequences-eager"):
                if stage == "sequences-eager" and n > args.eager_max:
                    console.print(f"{n}: sequences-eager skipped (--eager-max {args.eager_max})")
                    continue
                cmd = [sys.executable, "-c", SEQUENCES, str(args.work / f"import-{n}"),
                       str(Path(__file__).parent), "eager" if stage == "sequences-eager" else "lazy",
                       str(args.batches)]
            elif stage == "catalog":
                cmd = [sys.executable, "-c", CATALOG, str(args.work / f"import-{n}" / "manifest.json"),
                       str(Path(__file__).parent)]
            else:
                out = args.work / f"import-{n}"
                shutil.rmtree(out, ignore_errors=True)
                cmd = [str(BIN / "talkplay"), "data", "import", "mpd", str(slices), "--out",
                       str(out), "--test-size", "1000", "--valid-size", "1000"]
            console.print(f"{n}: {stage} ...")
            wall, rss, printed = run_child(cmd)
            row = {"playlists": n, "stage": stage, "seconds": round(wall, 1),
                   "peak_rss_gb": round(rss, 2)}
            if stage == "text":  # "<tracks> <embedded> <encode seconds>"
                tracks, done, took = printed.split()[-3:]
                row["stage"] = f"text (first {int(done):,} tracks)"
                row["encode_per_s"] = round(int(done) / float(took), 1)
                row["all_tracks_h"] = round(int(tracks) / row["encode_per_s"] / 3600, 2)
                console.print(f"{n}: MiniLM {row['encode_per_s']} tracks/s; all {int(tracks):,} "
                              f"tracks would take {row['all_tracks_h']} h")
            if stage == "evaluate":  # "<build s> <median s> <p95 s> <queries>"
                built, median, p95, queries = printed.split()[-4:]
                row.update(stage="evaluate (bm25 + cooc)", build_s=round(float(built), 1),
                           query_median_s=round(float(median), 3), query_p95_s=round(float(p95), 3))
                console.print(f"{n}: bm25 + cooc built in {row['build_s']} s; {queries} queries, "
                              f"median {row['query_median_s']} s, p95 {row['query_p95_s']} s")
            rows.append(row)
            console.print(f"{n}: {stage} {wall:.1f} s, peak {rss:.2f} GB")
            save(rows, args.out)  # after every stage: a long run that fails keeps what it measured
        n_entries = entries(slices, args.work / f"import-{n}")
        for r in rows:
            if r["playlists"] == n:
                r["entries"] = n_entries
    table = Table(title=f"data stages on MPD-shaped slices ({os.cpu_count()} CPUs; item2vec: "
                        f"{args.item2vec_epochs} epochs, {args.item2vec_workers} worker(s))")
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
    save(rows, args.out)
    plot(rows, args.out / "scale.png")
    console.print(f"wrote {args.out / 'scale.json'} and scale.png; 1-min load average "
                  f"{os.getloadavg()[0]:.1f}")


def save(rows: list[dict], out: Path) -> None:
    """Write ``OUT/scale.json`` (atomically: a crash never leaves half a file)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "scale.json", rows)


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
