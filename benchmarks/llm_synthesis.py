"""Claim: the paper's data stage runs offline against a real LLM server, and structured outputs
make a small model's answers usable.

    .venv/bin/python benchmarks/llm_synthesis.py [--playlists 50] [--music-turns 4]
        [--max-tokens 768] [--attempts 3] [--threads N] [--gguf FILE] [--modes on,off]

Starts llama.cpp's OpenAI-compatible server (``LocalServer``: ``llama-cpp-python[server]``) on
127.0.0.1 with the packaged SmolLM2-135M-Instruct GGUF, builds a small embedded world (text
only), and generates one conversation per playlist for the first N playlists, once per mode:

- ``on``: every request carries its conversation's JSON schema (``response_format``; llama.cpp
  turns it into a grammar);
- ``off``: the same requests without it (today's tolerant parsing only).

Per mode: conversations per minute, the share of playlists whose first answer was valid, the
share finished within the attempts, retries used (answers rejected before a valid one or the
last attempt), invalid answers by reason, and peak memory of the server process and of this
client. Then three generated conversations verbatim (structured mode). Both modes use the same
seeds, prompts and server; they run one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of a running process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reasons(work: Path) -> Counter:
    """Rejected answers of a run by reason (the first words of ``rejected.jsonl``'s reasons)."""
    out: Counter = Counter()
    path = work / "rejected.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            why = json.loads(line).get("reason", "?")
            out[why.split(":")[0] if not why.startswith("invalid output") else
                why.removeprefix("invalid output: ").split(" (")[0][:48]] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--playlists", type=int, default=50)
    ap.add_argument("--music-turns", type=int, default=4, help="music turns per conversation")
    ap.add_argument("--max-tokens", type=int, default=768, help="answer cap per request")
    ap.add_argument("--attempts", type=int, default=3, help="attempts per conversation")
    ap.add_argument("--threads", type=int, default=None, help="server threads (default: all)")
    ap.add_argument("--gguf", type=Path, default=None, help="GGUF model (default: SmolLM2-135M)")
    ap.add_argument("--modes", default="on,off", help="structured outputs on, off or both")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from talkplay.data.conversations.common import ConversationShape
    from talkplay.data.conversations.llm import LLMConfig, generate
    from talkplay.data.conversations.local_server import LocalServer
    from talkplay.data.dataset import read_dataset
    from talkplay.data.world import WorldConfig, synth_world

    console = Console(width=150)
    root = Path(tempfile.mkdtemp(prefix="llm-synthesis-"))
    synth_world(root / "data", WorldConfig(seed=args.seed, n_tracks=600, n_artists=80,
                                           n_playlists=max(120, args.playlists), n_scenes=10,
                                           audio=False))
    ds = read_dataset(root / "data")
    playlists = [p for p in ds.playlists if len(p.track_ids) >= 2][:args.playlists]
    rows, examples = [], []
    with LocalServer(args.gguf, threads=args.threads) as server:
        console.print(f"llama.cpp server {server.base_url}, {server.model.name}, "
                      f"{server.threads} threads, ready in {server.started_s:.1f} s; "
                      f"{len(playlists)} playlists, {args.music_turns} music turns, "
                      f"max {args.max_tokens} tokens, {args.attempts} attempts")
        for mode in args.modes.split(","):
            cfg = LLMConfig(base_url=server.base_url, model=server.model_name, concurrency=1,
                            max_attempts=args.attempts, backoff_s=0.0, max_tokens=args.max_tokens,
                            timeout_s=600, structured=mode,
                            shape=ConversationShape(seed=args.seed, max_turns=args.music_turns,
                                                    negatives=4))
            work = root / f"work-{mode}"
            t0 = time.perf_counter()
            result = generate(ds.tracks, playlists, cfg, work)
            minutes = (time.perf_counter() - t0) / 60
            why = reasons(work)
            rows.append((mode, result, minutes, why))
            if mode == "on":
                examples = result.conversations[:3]
        server_mb = peak_rss_mb(server.proc.pid)
    client_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = Table(title="LLM conversation synthesis against llama.cpp on 127.0.0.1")
    for col in ("structured outputs", "playlists", "conversations", "conv./min",
                "valid on 1st try", "finished", "retries", "invalid answers by reason"):
        table.add_column(col, justify="left" if col.startswith(("struct", "invalid")) else "right")
    for mode, r, minutes, why in rows:
        n = len(playlists)
        retries = sum(why.values())
        shown = f"{mode} ({r.structured})" if r.structured else mode + (
            "" if mode == "off" else " (refused)")
        table.add_row(shown, str(n),
                      str(r.new), f"{r.new / minutes:.2f}", f"{r.first_try / n:.0%}",
                      f"{r.new / n:.0%}", str(retries),
                      ", ".join(f"{k} {v}" for k, v in why.most_common(4)) or "none")
    console.print(table)
    console.print(f"peak memory: server {server_mb:.0f} MB, client {client_mb:.0f} MB; "
                  f"work files in {root}")
    for c in examples:
        console.print(f"\n[bold]{c.id}[/] ({c.split}, playlist {c.playlist_id}, rejected at "
                      f"{c.meta['rejected']})")
        for m in c.messages:
            console.print(f"  {m.role}: {m.content}", markup=False, highlight=False)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
