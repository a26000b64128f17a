"""``talkplay data conversations | export-json | import-json``: conversation synthesis and exchange."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from talkplay.cli.app import console, data_app, fail, progress_bar, renamed
from talkplay.data.conversations import llm as llm_gen
from talkplay.data.conversations.common import (
    ConversationShape,
    add_conversations,
    conversation_stats,
    playlists_to_use,
    save_with_generator,
)
from talkplay.data.conversations.local_server import LocalServer
from talkplay.data.conversations.paper_json import export_jsonl, import_jsonl
from talkplay.data.conversations.simulator import SimulatorConfig, simulate
from talkplay.data.dataset import read_dataset
from talkplay.data.errors import DataError
from talkplay.data.schema import SPLITS


def _splits(value: str | None) -> list[str] | None:
    if not value:
        return None
    out = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in out if s not in SPLITS]
    if bad:
        fail(f"unknown split(s) {', '.join(bad)}; choose from {', '.join(SPLITS)}")
    return out


def _print_stats(stats: dict, seconds: float, title: str) -> None:
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for k, v in stats.items():
        table.add_row(k, str(v))
    console.print(table)
    if seconds > 0 and stats["conversations"]:
        console.print(f"{stats['conversations'] / seconds:.1f} conversations/s ({seconds:.1f} s)")


@data_app.command("conversations")
def conversations(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory (rewritten atomically).")],
    generator: Annotated[str, typer.Option(help="simulator (offline) or llm.")] = "simulator",
    seed: Annotated[int, typer.Option(help="Random seed (negative sets, phrasing, rejections).")] = 0,
    max_music_turns: Annotated[int, typer.Option(
        help="Most music turns (recommendations) per generated conversation.")] = 8,
    per_playlist: Annotated[int, typer.Option(help="Conversations per playlist.")] = 1,
    reject_rate: Annotated[float, typer.Option(help="Share of turns that are rejections.")] = 0.15,
    negatives: Annotated[int, typer.Option(help="Negative-set size per conversation.")] = 8,
    splits: Annotated[str | None, typer.Option(help="Only playlists of these splits, e.g. 'train,valid'.")] = None,
    max_playlists: Annotated[int | None, typer.Option(help="At most this many playlists.")] = None,
    llm_base_url: Annotated[str | None, typer.Option(help="LLM: OpenAI-style base URL (…/v1); env TALKPLAY_LLM_BASE_URL.")] = None,
    llm_model: Annotated[str | None, typer.Option(help="LLM: model name; env TALKPLAY_LLM_MODEL.")] = None,
    llm_api_key: Annotated[str | None, typer.Option(help="LLM: API key; env TALKPLAY_LLM_API_KEY.")] = None,
    concurrency: Annotated[int, typer.Option(help="LLM: requests in flight.")] = 4,
    max_attempts: Annotated[int, typer.Option(help="LLM: attempts per conversation.")] = 4,
    timeout: Annotated[float, typer.Option(help="LLM: seconds per request.")] = 120.0,
    backoff: Annotated[float, typer.Option(help="LLM: first retry delay in seconds (doubles per attempt).")] = 1.0,
    temperature: Annotated[float, typer.Option(help="LLM: sampling temperature.")] = 0.8,
    llm_max_tokens: Annotated[int, typer.Option(
        min=16, help="LLM: most tokens per answer (max_tokens).")] = 3000,
    llm_structured: Annotated[str, typer.Option(
        help="LLM: structured outputs. auto sends each request's JSON schema (response_format) "
             "and drops it if the server refuses it; on: a refusal stops the run; off.")] = "auto",
    serve_local: Annotated[bool, typer.Option(
        help="LLM: start llama.cpp's server on 127.0.0.1 with the packaged SmolLM2 (or "
             "--llm-gguf), generate through it (one request at a time), then stop it; needs "
             "llama-cpp-python[server].")] = False,
    llm_gguf: Annotated[Path | None, typer.Option(
        help="LLM: the GGUF model --serve-local serves (default: packaged SmolLM2-135M).")] = None,
    progress_dir: Annotated[Path | None, typer.Option(help="LLM: progress directory (default DATA/conversations-llm).")] = None,
    restart: Annotated[bool, typer.Option(help="LLM: discard earlier progress.")] = False,
    finalize: Annotated[bool, typer.Option(help="LLM: write the conversations finished so far "
                                              "into the dataset without generating more.")] = False,
    old_max_turns: Annotated[int | None, typer.Option("--max-turns", hidden=True)] = None,
    old_limit: Annotated[int | None, typer.Option("--limit", hidden=True)] = None,
    old_base_url: Annotated[str | None, typer.Option("--base-url", hidden=True)] = None,
    old_model: Annotated[str | None, typer.Option("--model", hidden=True)] = None,
    old_api_key: Annotated[str | None, typer.Option("--api-key", hidden=True)] = None,
    old_work: Annotated[Path | None, typer.Option("--work", hidden=True)] = None,
) -> None:
    """Add synthetic conversations made from the dataset's playlists (each keeps its playlist's split)."""
    max_turns = renamed(max_music_turns, old_max_turns, "--max-music-turns", "--max-turns")
    limit = renamed(max_playlists, old_limit, "--max-playlists", "--limit")
    base_url = renamed(llm_base_url, old_base_url, "--llm-base-url", "--base-url")
    model = renamed(llm_model, old_model, "--llm-model", "--model")
    api_key = renamed(llm_api_key, old_api_key, "--llm-api-key", "--api-key")
    work = renamed(progress_dir, old_work, "--progress-dir", "--work")
    try:
        ds = read_dataset(data)
        playlists = playlists_to_use(ds, _splits(splits), limit)
        t0 = time.perf_counter()
        shape = ConversationShape(seed=seed, max_turns=max_turns, per_playlist=per_playlist,
                                  reject_rate=reject_rate, negatives=negatives)
        if generator == "simulator":
            cfg = SimulatorConfig(shape=shape)
            with progress_bar(remaining=False, transient=True) as bar:
                task = bar.add_task("simulating", total=len(playlists))
                convs = simulate(ds.tracks, playlists, cfg, progress=lambda n: bar.advance(task, n))
            record = {"generator": "simulator", "config": cfg.record()}
        elif generator == "llm":
            work = work or data / "conversations-llm"
            cfg = llm_gen.LLMConfig(
                base_url=base_url, model=model, api_key=api_key, shape=shape,
                concurrency=concurrency, max_attempts=max_attempts, timeout_s=timeout, backoff_s=backoff,
                temperature=temperature, structured=llm_structured, max_tokens=llm_max_tokens)
            if finalize:
                convs = llm_gen.finished(work)
            else:
                with contextlib.ExitStack() as stack:
                    if serve_local:
                        if base_url or model:
                            fail("--serve-local starts its own server: leave out --llm-base-url "
                                 "and --llm-model")
                        with console.status("starting the local llama.cpp server ..."):
                            server = stack.enter_context(LocalServer(llm_gguf))
                        console.print(f"llama.cpp server on {server.base_url} "
                                      f"({server.model.name}, ready in {server.started_s:.1f} s)")
                        cfg = replace(cfg, base_url=server.base_url, model=server.model_name,
                                      concurrency=1)
                    with progress_bar(remaining=False, transient=True) as bar:
                        task = bar.add_task("generating", total=len(playlists) * per_playlist)
                        result = llm_gen.generate(ds.tracks, playlists, cfg, work,
                                                  restart=restart,
                                                  on_done=lambda n: bar.advance(task, n))
                convs = result.conversations
                console.print(f"{result.new} new ({result.first_try} valid on the first try), "
                              f"{len(convs) - result.new} from earlier runs, "
                              f"{result.invalid_outputs} invalid outputs (see {work}/rejected.jsonl); "
                              "structured outputs "
                              + (f"on ({result.structured})" if result.structured else
                                 "off" if llm_structured == "off" else "refused by the server"))
                if not result.complete:
                    why = "stopped early" if result.aborted else f"{len(result.failed)} failed"
                    fail(f"run incomplete ({why}); the dataset was not rewritten. Rerun to resume, "
                         "or pass --finalize to keep what is finished.", code=3)
            record = {"generator": "llm", "config": cfg.record(), "work": str(work)}
        else:
            fail(f"unknown generator {generator!r}; choose simulator or llm")
        seconds = time.perf_counter() - t0
        replaced = add_conversations(ds, convs)
        record["added"] = len(convs)
        save_with_generator(data, ds, record)
    except DataError as e:
        fail(str(e))
    _print_stats(conversation_stats(convs), seconds, f"{generator} conversations")
    if replaced:
        console.print(f"replaced {replaced} existing conversations with the same ids")


@data_app.command("export-json")
def export_json(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output JSONL file.")],
    splits: Annotated[str | None, typer.Option(help="Only these splits, e.g. 'test'.")] = None,
) -> None:
    """Write conversations as talkplay-db-style JSONL records {pid, cid, conversations}."""
    try:
        n = export_jsonl(read_dataset(data), out, _splits(splits))
    except DataError as e:
        fail(str(e))
    console.print(f"wrote {n} conversations to {out}")


@data_app.command("import-json")
def import_json(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory (rewritten atomically).")],
    file: Annotated[Path, typer.Option("--file", help="talkplay-db-style JSONL file.")],
    default_split: Annotated[str | None, typer.Option(
        help="Split for records whose playlist is not in the dataset.")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Drop bad records instead of failing.")] = False,
    old_split: Annotated[str | None, typer.Option("--split", hidden=True)] = None,
) -> None:
    """Add talkplay-db-style conversations to a dataset; every music id must be in its catalog."""
    split = renamed(default_split, old_split, "--default-split", "--split")
    try:
        ds = read_dataset(data)
        convs, col = import_jsonl(ds, file, default_split=split, skip_invalid=skip_invalid)
        replaced = add_conversations(ds, convs)
        save_with_generator(data, ds, {"generator": "import-json", "file": str(file),
                                       "added": len(convs), "dropped": col.dropped.total})
    except DataError as e:
        fail(str(e))
    _print_stats(conversation_stats(convs), 0, f"imported from {file}")
    if replaced:
        console.print(f"replaced {replaced} existing conversations with the same ids")
    for reason, count in col.dropped.counts.most_common():
        console.print(f"[yellow]dropped {count}[/]: {reason}")
