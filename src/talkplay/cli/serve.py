"""``talkplay serve`` (HTTP API + web page) and ``talkplay chat`` (terminal)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from talkplay.cli.app import QuantizeOpt, app, console, fail, quiet_libraries
from talkplay.data.errors import DataError

RunOpt = Annotated[Path | None, typer.Option("--run", help="Fine-tuned TalkPlay run directory.")]
SystemOpt = Annotated[str | None, typer.Option(
    "--system", help="Serve a baseline instead (popularity, bm25, dense, cooc, clap; needs "
                     "--data), or with --run the run's talkplay-hybrid (weights fit by evaluate).")]
DataOpt = Annotated[Path | None, typer.Option(
    "--data", "-d", help="Dataset directory (default: the one the run was trained on).")]


def _load(run: Path | None, system: str | None, data: Path | None, quantize: str = "none"):
    from talkplay.serve.loading import load_recommender

    quiet_libraries()  # library chatter only with --verbose (faiss logs while importing)
    if system is not None:  # bm25s resets its log level on import: quiet again afterwards
        import talkplay.evaluate.baselines  # noqa: F401
    quiet_libraries()
    try:
        with console.status("loading the recommender ..."):
            loaded = load_recommender(run, system, data, quantize=quantize)
    except DataError as e:
        fail(str(e))
    quiet_libraries()  # again: libraries imported while loading may set their loggers' levels
    return loaded


@app.command("serve")
def serve(
    run: RunOpt = None,
    system: SystemOpt = None,
    data: DataOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 exposes the server).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", help="Require this key on every API call (default: $TALKPLAY_API_KEY).")] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Tracks per turn.")] = 5,
    max_message_chars: Annotated[int, typer.Option(min=1, help="Longest user message.")] = 1000,
    max_turns: Annotated[int, typer.Option(min=1, help="Turns per session.")] = 50,
    max_sessions: Annotated[int, typer.Option(min=1, help="Sessions kept in memory.")] = 1000,
    queue_size: Annotated[int, typer.Option(
        min=1, help="Recommender jobs queued or running before answering 503.")] = 64,
    max_batch: Annotated[int, typer.Option(
        min=1, help="Most waiting turns a TalkPlay model answers together (their replies are "
                    "written in one batch); 1: one turn at a time.")] = 8,
    replica: Annotated[str | None, typer.Option(
        help="This server's name among replicas behind one proxy: session ids start with "
             "NAME. so the proxy can route a session to its server.")] = None,
    audio_root: Annotated[list[Path] | None, typer.Option(
        help="Extra directory audio may be served from (repeatable).")] = None,
    graceful_timeout: Annotated[float, typer.Option(
        help="Seconds to let in-flight requests finish on shutdown.")] = 30.0,
    quantize: QuantizeOpt = "none",
) -> None:
    """Serve the chat API and web page for a TalkPlay run or a baseline."""
    import uvicorn

    from talkplay.serve.app import create_app
    from talkplay.serve.settings import ServeSettings, api_key_from_env

    try:
        settings = ServeSettings(api_key=api_key_from_env(api_key), k=k,
                                 max_message_chars=max_message_chars, max_turns=max_turns,
                                 max_sessions=max_sessions, queue_size=queue_size,
                                 max_batch=max_batch, replica=replica, max_k=max(k, 20),
                                 audio_roots=list(audio_root or []))
    except ValueError as e:
        fail(str(e))
    recommender, ds = _load(run, system, data, quantize)
    web_app = create_app(recommender, ds, settings)
    if host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        console.print(f"[bold yellow]warning:[/] serving on {host} without an API key: anyone "
                      "who can reach this port can use it (set --api-key or $TALKPLAY_API_KEY)")
    shown = f"[{host}]" if ":" in host else host
    console.print(f"TalkPlay ({getattr(recommender, 'name', '?')}, {len(ds.tracks):,} tracks) on "
                  f"[bold]http://{shown}:{port}/[/]  API docs: http://{shown}:{port}/docs"
                  + ("  (API key required)" if settings.api_key else ""))
    uvicorn.run(web_app, host=host, port=port, log_level="info", proxy_headers=False,
                timeout_graceful_shutdown=graceful_timeout, server_header=False)


@app.command("chat")
def chat(
    run: RunOpt = None,
    system: SystemOpt = None,
    data: DataOpt = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=50, help="Tracks shown per turn.")] = 5,
    max_turns: Annotated[int, typer.Option(
        min=1, help="Turns per session (then /new starts another).")] = 50,
    quantize: QuantizeOpt = "none",
) -> None:
    """Chat with a TalkPlay run or a baseline in the terminal (reads lines from stdin)."""
    from talkplay.serve.chat import run_chat

    recommender, ds = _load(run, system, data, quantize)
    try:
        run_chat(recommender, ds, k=k, max_turns=max_turns, stdin=sys.stdin, console=console)
    except KeyboardInterrupt:
        console.print()
