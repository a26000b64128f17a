"""LLM conversation generator over any OpenAI-compatible chat-completions endpoint.

Works with vLLM, the llama.cpp server, Ollama and hosted APIs (``POST {base}/chat/completions``
with ``base`` like ``http://127.0.0.1:8000/v1``). Requests run concurrently under a
semaphore; HTTP errors, timeouts and invalid answers are retried with exponential backoff;
each finished conversation is appended (fsync'd) to ``progress.jsonl`` so an interrupted
run resumes without redoing or duplicating work (see ``progress.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import httpx

from talkplay.data.conversations.common import ConversationShape, NegativeSampler
from talkplay.data.conversations.progress import ProgressLog
from talkplay.data.conversations.prompt import (
    RESPONSE_FORMATS,
    InvalidOutput,
    build_messages,
    parse_conversation,
    response_format,
)
from talkplay.data.errors import DataError
from talkplay.data.schema import Conversation, Playlist, Track
from talkplay.io import read_json

log = logging.getLogger(__name__)
ENV = {"base_url": "TALKPLAY_LLM_BASE_URL", "model": "TALKPLAY_LLM_MODEL",
       "api_key": "TALKPLAY_LLM_API_KEY"}
# Settings that change what is generated, as WORK/run.json records them (one flat dict); a
# resumed run must keep them. Every run since the first wrote these keys, so keep them as they are.
SHAPING = ("model", "seed", "max_turns", "min_tracks", "per_playlist", "reject_rate", "negatives",
           "lyrics_chars", "temperature", "max_tokens")
STRUCTURED = ("auto", "on", "off")


@dataclass
class LLMConfig:
    """Endpoint and generation settings of the LLM generator."""

    base_url: str | None = None
    """OpenAI-style base URL ending in /v1 (default: $TALKPLAY_LLM_BASE_URL)."""
    model: str | None = None
    """Model name sent to the endpoint (default: $TALKPLAY_LLM_MODEL)."""
    api_key: str | None = field(default=None, repr=False)
    """Bearer token (default: $TALKPLAY_LLM_API_KEY); never written to disk."""
    shape: ConversationShape = field(default_factory=ConversationShape)
    """Seed, turns, windows, rejections and negatives: shared with the simulator."""
    lyrics_chars: int = 200
    temperature: float = 0.8
    max_tokens: int = 3000
    timeout_s: float = 120.0
    max_attempts: int = 4
    backoff_s: float = 1.0
    """First retry delay; doubles each attempt (with jitter), capped at ``backoff_max_s``."""
    backoff_max_s: float = 30.0
    concurrency: int = 4
    abort_after: int = 8
    """Stop the run after this many playlists in a row failed on connection errors (server down)."""
    structured: str = "auto"
    """Structured outputs: "auto" sends each request's JSON schema as ``response_format``
    (``prompt.conversation_schema``), in OpenAI's ``json_schema`` form and, when the server
    refuses that, in llama-cpp-python's ``json_object`` form; when it refuses both, requests go
    without a schema for the rest of the run. "on" makes refusing both fatal; "off" never sends
    a schema. Answers are validated the same way in every case (a server may also ignore it)."""

    def resolved(self) -> LLMConfig:
        """A copy with unset endpoint fields read from the environment. Raises DataError if missing."""
        cfg = replace(self, shape=replace(self.shape))
        for name, var in ENV.items():
            if getattr(cfg, name) is None and os.environ.get(var):
                setattr(cfg, name, os.environ[var])
        if cfg.structured not in STRUCTURED:
            raise DataError(f"structured outputs must be one of {', '.join(STRUCTURED)}, got "
                            f"{cfg.structured!r}", field="structured")
        for name in ("base_url", "model"):
            if not getattr(cfg, name):
                raise DataError(f"no LLM {name}: pass --llm-{name.replace('_', '-')} or set "
                                f"{ENV[name]}")
        return cfg

    def record(self) -> dict:
        """Settings for manifests (no API key), flat: the shape's fields beside the LLM's own."""
        own = asdict(self)
        own.pop("api_key")
        return {**own.pop("shape"), **own}

    def shaping(self) -> dict:
        """The settings that change what is generated, in the flat form of ``WORK/run.json``."""
        flat = self.record()
        return {k: flat[k] for k in SHAPING}


@dataclass
class RunResult:
    conversations: list[Conversation]
    """Every finished conversation of the run directory (earlier runs included)."""
    new: int
    failed: list[str]
    """Keys ("<playlist id>#<index>") that exhausted their attempts."""
    invalid_outputs: int
    aborted: bool
    elapsed_s: float
    structured: str | None = None
    """The ``response_format`` form requests carried when the run ended ("json_schema" or
    "json_object"; None when off or refused)."""
    first_try: int = 0
    """Conversations of this run valid on their first attempt."""

    @property
    def complete(self) -> bool:
        return not self.failed and not self.aborted


class _Fatal(Exception):
    """A client error that retrying cannot fix (bad key, unknown model)."""


class _Refused(Exception):
    """The server refused a request that carried ``response_format`` (HTTP 400 or 422, or a 500
    whose body names the field: llama-cpp-python's validation errors)."""


def _endpoint(base_url: str) -> str:
    base = base_url.rstrip("/")
    return (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"


async def _complete(client: httpx.AsyncClient, url: str, cfg: LLMConfig, messages: list[dict],
                    seed: int, schema: dict | None = None) -> str:
    body = {"model": cfg.model, "messages": messages, "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens, "seed": seed}
    if schema is not None:
        body["response_format"] = schema
    resp = await client.post(url, json=body)
    if schema is not None and (resp.status_code in (400, 422) or (
            resp.status_code == 500 and "response_format" in resp.text)):
        raise _Refused(f"HTTP {resp.status_code} from {url}: {resp.text[:300]}")
    if resp.status_code in (400, 401, 403, 404):
        raise _Fatal(f"HTTP {resp.status_code} from {url}: {resp.text[:300]}")
    resp.raise_for_status()
    try:
        return resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise InvalidOutput(f"not a chat-completions response: {resp.text[:200]!r}") from None


def plan(playlists: list[Playlist], catalog: dict[str, Track], cfg: LLMConfig) -> list[tuple]:
    """(key, playlist, index, window of tracks) for every conversation to generate."""
    jobs = []
    for p in playlists:
        ids = [t for t in p.track_ids if t in catalog]
        for j in range(cfg.shape.per_playlist):
            span = cfg.shape.window(ids, j, random.Random(f"{cfg.shape.seed}:{p.id}:{j}"))
            if span is None:
                break
            jobs.append((f"{p.id}#{j}", p, j, [catalog[t] for t in ids[span[0]:span[1]]]))
    return jobs


async def _run(jobs, sampler: NegativeSampler, cfg: LLMConfig, plog: ProgressLog,
               done: dict[str, Conversation], on_done: Callable[[int], None] | None) -> RunResult:
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(cfg.concurrency)
    url = _endpoint(cfg.base_url)
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    state = {"new": 0, "invalid": 0, "down_streak": 0, "failed": [], "stop": False, "fatal": None,
             "formats": [] if cfg.structured == "off" else list(RESPONSE_FORMATS),
             "first_try": 0}

    async def one(client: httpx.AsyncClient, key, playlist, index, window) -> None:
        rng = random.Random(f"{cfg.shape.seed}:{playlist.id}:{index}:llm")
        negs = sampler.sample(playlist.track_ids, playlist.split, rng, cfg.shape.negatives)
        rejections = sum(rng.random() < cfg.shape.reject_rate for _ in window) if negs else 0
        messages = {flag: build_messages(window, negs, rejections=rejections,
                                         max_turns=cfg.shape.max_turns + rejections,
                                         lyrics_chars=cfg.lyrics_chars, structured=flag)
                    for flag in (False, True)}
        pos, neg = {t.id for t in window}, {t.id for t in negs}
        ids = [t.id for t in window] + [t.id for t in negs if t.id not in pos]
        turns = len(window) + rejections
        async with sem:
            transport_error = False
            attempt = 0
            while attempt < cfg.max_attempts:
                if state["stop"]:
                    return
                text = None
                dialect = state["formats"][0] if state["formats"] else None
                try:
                    text = await _complete(
                        client, url, cfg, messages[dialect is not None], rng.randrange(2**31),
                        response_format(dialect, ids, turns) if dialect else None)
                    msgs, meta = parse_conversation(text, pos, neg)
                except _Refused as e:
                    if state["formats"] and state["formats"][0] == dialect:
                        state["formats"].pop(0)
                        log.warning("the server refused response_format %s (%s)", dialect, e)
                    if not state["formats"] and cfg.structured == "on":
                        state["stop"], state["fatal"] = True, (
                            f"the server refused structured outputs (response_format): {e}; "
                            "pass --llm-structured auto or off")
                        return
                    continue  # resent in the next form, or without a schema: not an attempt
                except InvalidOutput as e:
                    state["invalid"] += 1
                    plog.reject(key, attempt, f"invalid output: {e}", text)
                    transport_error = False
                except httpx.HTTPError as e:
                    plog.reject(key, attempt, f"{type(e).__name__}: {e}")
                    transport_error = isinstance(e, httpx.TransportError)
                except _Fatal as e:
                    state["stop"], state["fatal"] = True, str(e)
                    return
                else:
                    conv = Conversation(id=f"{playlist.id}:llm{index}", messages=msgs,
                                        split=playlist.split, playlist_id=playlist.id,
                                        source=f"llm:{cfg.model}", meta=meta)
                    plog.add(key, conv)
                    done[key] = conv
                    state["new"] += 1
                    state["first_try"] += attempt == 0
                    state["down_streak"] = 0
                    if on_done:
                        on_done(1)
                    return
                attempt += 1
                if attempt < cfg.max_attempts:
                    delay = min(cfg.backoff_max_s, cfg.backoff_s * 2 ** (attempt - 1))
                    await asyncio.sleep(delay * (0.5 + random.random()))  # jitter spreads retries
            state["failed"].append(key)
            log.warning("%s: gave up after %d attempts", key, cfg.max_attempts)
            state["down_streak"] = state["down_streak"] + 1 if transport_error else 0
            if state["down_streak"] >= cfg.abort_after:
                log.error("endpoint unreachable for %d playlists in a row; stopping", cfg.abort_after)
                state["stop"] = True
            if on_done:
                on_done(1)

    timeout = httpx.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, 10.0))
    limits = httpx.Limits(max_connections=cfg.concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers) as client:
        await asyncio.gather(*(one(client, *job) for job in jobs))
    if state["fatal"]:
        raise DataError(state["fatal"])
    return RunResult(conversations=list(done.values()), new=state["new"], failed=state["failed"],
                     invalid_outputs=state["invalid"], aborted=state["stop"],
                     elapsed_s=time.perf_counter() - t0,
                     structured=state["formats"][0] if state["formats"] else None,
                     first_try=state["first_try"])


def generate(tracks: list[Track], playlists: list[Playlist], cfg: LLMConfig, work: str | Path,
             *, restart: bool = False, on_done: Callable[[int], None] | None = None) -> RunResult:
    """Generate (or resume generating) one conversation per playlist and index.

    Args:
        tracks: the catalog.
        playlists: source playlists.
        cfg: endpoint and generation settings (endpoint fields may come from the environment).
        work: progress directory; an earlier run's finished conversations there are kept.
        restart: discard earlier progress.
        on_done: called with 1 per finished or abandoned conversation (progress bars).
    Returns:
        RunResult; ``complete`` is False when some conversations failed or the run stopped.
    Raises:
        DataError: missing endpoint settings, mismatched earlier progress, or a fatal HTTP error.
    """
    cfg = cfg.resolved()
    plog = ProgressLog(work, cfg.shaping(), restart=restart)
    done = plog.load()
    catalog = {t.id: t for t in tracks}
    jobs = [j for j in plan(playlists, catalog, cfg) if j[0] not in done]
    log.info("%d conversations finished earlier, %d to generate", len(done), len(jobs))
    return asyncio.run(_run(jobs, NegativeSampler(tracks), cfg, plog, done, on_done))


def finished(work: str | Path) -> list[Conversation]:
    """Conversations recorded in a work directory (for ``--finalize``)."""
    path = Path(work)
    if not (path / "run.json").exists():
        raise DataError("no LLM generation progress here", file=str(path))
    return list(ProgressLog(path, read_json(path / "run.json")).load().values())
