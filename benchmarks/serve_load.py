"""Claim: the server answers 50 concurrent chat sessions x 5 turns with zero errors, and its
health endpoint stays responsive meanwhile (recommender calls run off the event loop); with a
TalkPlay run, dynamic batching (``--max-batch``) multiplies the turns per second.

    .venv/bin/python benchmarks/serve_load.py [--sessions 50] [--turns 5] [--system bm25]
        [--data DIR | --run RUN] [--tracks 3000] [--limit-s 300]
        [--quantize bf16-int8-reply] [--max-batch 1,8] [--sessions 1,10,50]

``--sessions`` and ``--max-batch`` take comma-separated lists: one server per ``--max-batch``
value (1 = one turn at a time, the server before batching), each loaded with every session
count in turn, and a table of turns/s, p50 and p95 per (batch, sessions) with the ratio of
turns/s to the first ``--max-batch`` value at the same session count.

Server: ``talkplay serve`` started by this script as a subprocess on 127.0.0.1 (a free port),
default settings (k = 5, queue 64). Data: ``--data`` or ``--run``; otherwise an embedded world
(``talkplay data synth``, no audio, ``--tracks`` tracks) is built in a temporary directory.
Each session: a request built from catalog tags, then turns that alternate feedback (like
track 2, skip track 1) and new requests. A prober process calls /api/health every 10 ms throughout.
Baseline in the same run: health latency on the idle server before the load.
Reports errors (must be 0; exit status 1 otherwise), turn latency p50/p95/max, throughput,
and health latency idle vs under load. Bounded: at most ``--limit-s`` seconds of load.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

BIN = Path(sys.executable).parent
console = Console(width=150)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_world(out: Path, tracks: int) -> Path:
    from talkplay.data.world import WorldConfig, synth_world

    cfg = WorldConfig(n_tracks=tracks, n_artists=max(tracks // 10, 10), n_playlists=tracks,
                      audio=False)
    synth_world(out, cfg)
    return out


def requests_from(data: Path, n: int, seed: int) -> list[str]:
    """``n`` request texts made from the catalog's tags (so retrieval has work to do)."""
    from talkplay.data.dataset import read_dataset

    tags = sorted({t for tr in read_dataset(data).tracks for t in tr.tags})
    rng = random.Random(seed)
    forms = ("some {} music please", "I want {} and {} tonight", "play me something {}",
             "more {} with a bit of {}")
    out = []
    for _ in range(n):
        form = rng.choice(forms)
        out.append(form.format(*(rng.choice(tags or ["rock"]) for _ in range(form.count("{}")))))
    return out


async def session(client: httpx.AsyncClient, turns: int, texts: list[str], lat: list[float],
                  errors: list[str]) -> None:
    r = await client.post("/api/sessions")
    if r.status_code != 201:
        errors.append(f"create: {r.status_code} {r.text[:200]}")
        return
    sid = r.json()["session_id"]
    headers = {"X-Session-Token": r.json()["client_token"]}
    shown: list[str] = []
    for turn in range(turns):
        if turn % 2 == 1 and len(shown) >= 2:
            body = {"track_id": shown[1] if turn % 4 == 1 else shown[0],
                    "action": "like" if turn % 4 == 1 else "skip"}
            path = f"/api/sessions/{sid}/feedback"
        else:
            body, path = {"text": texts[turn % len(texts)]}, f"/api/sessions/{sid}/messages"
        started = time.perf_counter()
        try:
            r = await client.post(path, json=body, headers=headers)
        except httpx.HTTPError as e:
            errors.append(f"{path}: {type(e).__name__}")
            continue
        lat.append(time.perf_counter() - started)
        if r.status_code != 200:
            errors.append(f"{path}: {r.status_code} {r.text[:200]}")
            continue
        shown = [t["id"] for t in r.json()["tracks"]]


def probe(url: str, ready, stop, out, every: float = 0.01) -> None:
    """Health latencies (seconds) until ``stop`` is set; runs in its own process, so the load
    generator's event loop and GIL do not delay it: what it measures is the server."""
    lat, errors = [], 0
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/api/health")  # connect before the load starts
        ready.set()
        while not stop.is_set():
            started = time.perf_counter()
            status = client.get("/api/health").status_code
            lat.append(time.perf_counter() - started)
            errors += status != 200
            time.sleep(every)
    out.put((lat, errors))


async def load(url: str, args, texts: list[str]) -> dict:
    limits = httpx.Limits(max_connections=args.sessions + 10, max_keepalive_connections=args.sessions + 10)
    async with httpx.AsyncClient(base_url=url, timeout=args.limit_s, limits=limits) as client:
        idle: list[float] = []
        for _ in range(40):  # baseline: the idle server
            started = time.perf_counter()
            (await client.get("/api/health")).raise_for_status()
            idle.append(time.perf_counter() - started)
        turn_lat: list[float] = []
        errors: list[str] = []
        ctx = multiprocessing.get_context("spawn")
        ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
        prober = ctx.Process(target=probe, args=(url, ready, stop, out), daemon=True)
        prober.start()
        if not await asyncio.to_thread(ready.wait, 60):
            raise SystemExit("the health prober did not start")
        rng = random.Random(args.seed)
        started = time.perf_counter()
        jobs = [session(client, args.turns, rng.sample(texts, min(3, len(texts))), turn_lat, errors)
                for _ in range(args.sessions)]
        try:
            await asyncio.wait_for(asyncio.gather(*jobs), timeout=args.limit_s)
        except TimeoutError:
            errors.append(f"load did not finish within {args.limit_s} s")
        wall = time.perf_counter() - started
        stop.set()
        health_lat, health_errors = out.get(timeout=30)
        prober.join(10)
        errors += [f"health: {health_errors} non-200 answers"] if health_errors else []
        stats = (await client.get("/api/health")).json()
    return {"idle": idle, "turns": turn_lat, "health": health_lat, "errors": errors, "wall": wall,
            "server": stats}


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def ms(values: list[float], q: float) -> str:
    return f"{1000 * float(np.quantile(values, q)):.1f}" if values else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", default="50", help="session counts, comma-separated")
    p.add_argument("--turns", type=int, default=5)
    p.add_argument("--system", default="bm25", help="Baseline to serve (ignored with --run).")
    p.add_argument("--data", type=Path, help="Dataset directory (default: build a world).")
    p.add_argument("--run", type=Path, help="Serve a TalkPlay run instead of a baseline.")
    p.add_argument("--tracks", type=int, default=3000, help="World size when building one.")
    p.add_argument("--limit-s", type=float, default=300.0, help="Most seconds of load.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quantize", default=None, help="TalkPlay weights (talkplay serve --quantize)")
    p.add_argument("--max-batch", default="8", help="talkplay serve --max-batch values, "
                                                    "comma-separated (one server each)")
    args = p.parse_args()
    counts = [int(x) for x in args.sessions.split(",") if x.strip()]
    batches = [int(x) for x in args.max_batch.split(",") if x.strip()]
    if not counts or not all(1 <= n <= 500 for n in counts) or not 1 <= args.turns <= 50:
        raise SystemExit("--sessions must be 1..500 and --turns 1..50")
    if not batches or min(batches) < 1:
        raise SystemExit("--max-batch values must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None and args.run is None:
            with console.status(f"building a {args.tracks}-track world ..."):
                data = build_world(Path(tmp) / "world", args.tracks)
        source = ["--run", str(args.run)] if args.run else ["--system", args.system]
        if data is not None:
            source += ["--data", str(data)]
        if data is None:
            from talkplay.serve.loading import run_data_dir

            data_for_texts = run_data_dir(args.run)
        else:
            data_for_texts = data
        texts = requests_from(data_for_texts, 64, args.seed)
        extra = ["--quantize", args.quantize] if args.quantize else []
        results: list[tuple[int, int, dict]] = []
        for batch in batches:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = subprocess.Popen([str(BIN / "talkplay"), "serve", *source, *extra,
                                       "--max-batch", str(batch), "--port", str(port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      env={**os.environ, "TALKPLAY_API_KEY": ""})
            try:
                with console.status("starting the server ..."):
                    wait_ready(url, server)
                for n in counts:
                    args.sessions = n
                    console.print(f"server up ({url}, --max-batch {batch}); load: {n} sessions "
                                  f"x {args.turns} turns")
                    res = asyncio.run(load(url, args, texts))
                    report(res, args)
                    results.append((batch, n, res))
            finally:
                server.terminate()
                server.wait(30)
    if len(results) > 1:
        summary(results, args)
    errors = [e for _, _, res in results for e in res["errors"]]
    if errors:
        for e in errors[:10]:
            console.print(f"[red]error[/] {e}")
        raise SystemExit(1)


def summary(results: list[tuple[int, int, dict]], args) -> None:
    """Turns/s, p50 and p95 per (max batch, sessions), against the first max-batch value."""
    table = Table(title=f"serving {results[0][2]['server']['recommender']}"
                  f"{' --quantize ' + args.quantize if args.quantize else ''}, "
                  f"{args.turns} turns per session, {os.cpu_count()} CPUs")
    for col in ("max batch", "sessions", "turns", "errors", "turns/s", "p50 s", "p95 s",
                "turns/s vs first", "batches (size: count)"):
        table.add_column(col, justify="right")
    base = {n: len(r["turns"]) / r["wall"] for b, n, r in results if b == results[0][0]}
    seen: dict[int, dict[str, int]] = {}  # the server's counters are cumulative
    for b, n, r in results:
        rate = len(r["turns"]) / r["wall"]
        total = r["server"]["queue"].get("batches", {})
        sizes = {k: v - seen.get(b, {}).get(k, 0) for k, v in total.items()}
        sizes = {k: v for k, v in sizes.items() if v}
        seen[b] = total
        table.add_row(str(b), str(n), str(len(r["turns"])), str(len(r["errors"])), f"{rate:.2f}",
                      f"{np.quantile(r['turns'], 0.5):.2f}" if r["turns"] else "-",
                      f"{np.quantile(r['turns'], 0.95):.2f}" if r["turns"] else "-",
                      f"{rate / base[n]:.2f}x" if n in base else "-",
                      ", ".join(f"{k}: {v}" for k, v in sizes.items()))
    console.print(table)
    console.print(f"1-min load average at the end {os.getloadavg()[0]:.1f}")


def report(res: dict, args) -> None:
    n = len(res["turns"])
    table = Table(title=f"serve load: {res['server']['recommender']}, {res['server']['tracks']} tracks, "
                  f"{args.sessions} sessions x {args.turns} turns")
    for col in ("what", "n", "p50 ms", "p95 ms", "max ms"):
        table.add_column(col, justify="right" if col != "what" else "left")
    table.add_row("turn (message/feedback)", str(n), ms(res["turns"], 0.5), ms(res["turns"], 0.95),
                  ms(res["turns"], 1.0))
    table.add_row("health, idle (baseline)", str(len(res["idle"])), ms(res["idle"], 0.5),
                  ms(res["idle"], 0.95), ms(res["idle"], 1.0))
    table.add_row("health, under load", str(len(res["health"])), ms(res["health"], 0.5),
                  ms(res["health"], 0.95), ms(res["health"], 1.0))
    console.print(table)
    q = res["server"]["queue"]
    console.print(f"errors: {len(res['errors'])}  throughput: {n / res['wall']:.1f} turns/s "
                  f"over {res['wall']:.1f} s  queue: done {q['done']}, rejected {q['rejected']}")
    if res["health"] and res["idle"]:
        console.print(f"health p95 under load / idle: "
                      f"{np.quantile(res['health'], 0.95) / np.quantile(res['idle'], 0.95):.1f}x")


if __name__ == "__main__":
    main()
