"""A thin FastAPI app over any ``Recommender``: sessions, turns, feedback, tracks, audio, page.

```
GET    /api/health                       liveness, queue and session counts
POST   /api/sessions                     -> session_id + client_token (X-Session-Token)
GET    /api/sessions/{sid}               the conversation so far
DELETE /api/sessions/{sid}
POST   /api/sessions/{sid}/messages      {"text"} -> recommended tracks + reply
POST   /api/sessions/{sid}/feedback      {"track_id", "action": like|skip} -> next turn
GET    /api/tracks/{track_id}            track metadata
GET    /api/tracks/{track_id}/audio      the track's audio file (Range requests supported)
GET    /                                 the chat page (static/, no external resources)
GET    /docs                             API docs (Swagger UI from the installed
                                         fastapi-offline package, not a CDN)
```

Recommender calls run on one worker thread (``worker.GenerationQueue``); the event loop only
awaits them, so the server keeps answering while a turn is generated. Turns of a TalkPlay model
that wait together are answered together (``--max-batch``: their replies in one batch).
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from talkplay.data.dataset import Dataset
from talkplay.data.errors import DataError
from talkplay.recommend.protocol import Recommender
from talkplay.serve import models as m
from talkplay.serve.catalog import Catalog, media_type
from talkplay.serve.guard import (
    ApiError,
    AudioSigner,
    BodyLimit,
    bearer,
    install_error_handlers,
    key_header,
    key_matches,
    session_header,
)
from talkplay.serve.session import Pending, SessionError, Turn, clean_text
from talkplay.serve.settings import ServeSettings
from talkplay.serve.store import Entry, SessionStore
from talkplay.serve.worker import GenerationQueue, QueueFull

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
_ERRORS = {s: {"model": m.ErrorOut} for s in (400, 401, 404, 409, 413, 422, 503)}
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
KeyHeader = Annotated[str | None, Depends(key_header)]


def require_key(request: Request, credentials: Credentials, header_key: KeyHeader) -> None:
    """Dependency of every /api route: the API key when the server has one."""
    expected = request.app.state.settings.api_key
    if expected is not None and not key_matches(expected, credentials, header_key):
        raise ApiError(401, "unauthorized", "missing or wrong API key "
                       "(send Authorization: Bearer KEY or X-API-Key: KEY)",
                       {"WWW-Authenticate": "Bearer"})


def session_of(sid: str, request: Request,
               token: Annotated[str | None, Depends(session_header)]) -> Entry:
    """Dependency: the caller's session (404 for an unknown id and a wrong token alike)."""
    entry = request.app.state.store.get(sid, token)
    if entry is None:
        raise ApiError(404, "session_not_found", "no such session for this client "
                       "(unknown id, wrong X-Session-Token, or expired)")
    return entry


SessionEntry = Annotated[Entry, Depends(session_of)]


def create_app(recommender: Recommender, dataset: Dataset,
               settings: ServeSettings | None = None) -> FastAPI:
    """Build the app.

    Args:
        recommender: any ``Recommender`` (TalkPlay or a baseline); called from one thread only.
        dataset: the catalog (track metadata, audio paths relative to ``dataset.root``).
        settings: limits and access control (defaults: no key, bounded everything).
    Returns:
        The FastAPI application (serve it with uvicorn).
    """
    cfg = settings or ServeSettings()
    roots = ([Path(dataset.root)] if dataset.root else []) + list(cfg.audio_roots)
    catalog = Catalog(dataset, roots)
    store = SessionStore(cfg.max_sessions, cfg.session_ttl_s, cfg.max_turns, cfg.replica)
    queue = GenerationQueue(cfg.queue_size, cfg.max_batch)
    signer = AudioSigner()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await queue.close()  # uvicorn has let in-flight requests finish; drain the worker too

    # FastAPIOffline is FastAPI with /docs served from the package's own copy of Swagger UI, so
    # no page this server serves makes the browser reach the internet. No /redoc: ReDoc's
    # bundle always fetches its logo from a CDN.
    app = FastAPIOffline(title="TalkPlay", version="1", lifespan=lifespan, responses=_ERRORS,
                         redoc_url=None,
                         description="Conversational music recommendation over HTTP.")
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    install_error_handlers(app)
    app.state.queue, app.state.store, app.state.settings = queue, store, cfg

    def track_out(track_id: str) -> dict:
        card = catalog.card(track_id)
        if card["has_audio"]:
            url = f"/api/tracks/{quote(track_id, safe='')}/audio"
            card["audio_url"] = url + (f"?sig={signer.sign(track_id)}" if cfg.api_key else "")
        return card

    def turn_out(entry: Entry, turn: Turn) -> m.TurnOut:
        session = entry.session
        rec = turn.recommendation
        tracks = [m.RecommendedTrack(**track_out(t.track_id), rank=i + 1, score=t.score,
                                     tokens=t.tokens) for i, t in enumerate(rec.tracks)]
        feedback = (m.FeedbackOut(action=turn.feedback[0], track_id=turn.feedback[1])
                    if turn.feedback else None)
        return m.TurnOut(turn=len(session.turns) - 1, request=turn.request, reply=rec.reply,
                         tracks=tracks, feedback=feedback,
                         turns_left=session.max_turns - len(session.turns),
                         info=json.loads(json.dumps(rec.info, default=str)))

    def k_of(k: int | None) -> int:
        if k is not None and k > cfg.max_k:
            raise ApiError(422, "k_too_large", f"k must be at most {cfg.max_k}")
        return k or cfg.k

    async def run_turn(entry: Entry, prepare, k: int) -> m.TurnOut:
        async with entry.lock:  # one turn at a time per session, so histories never interleave
            try:
                pending: Pending = prepare()
            except SessionError as e:
                raise ApiError(409 if e.code == "turn_limit" else 422, e.code, str(e)) from e
            try:
                rec = await queue.recommend(recommender, pending, k)
            except QueueFull as e:
                raise ApiError(503, "busy", f"the recommender is busy ({e}); retry shortly",
                               {"Retry-After": "1"}) from e
            except DataError as e:  # e.g. a history track the run's codebook does not know
                log.warning("recommender %s: %s", getattr(recommender, "name", "?"), e)
                raise ApiError(422, "bad_history", e.reason) from e
            except Exception as e:
                log.exception("recommender %s failed", getattr(recommender, "name", "?"))
                raise ApiError(500, "recommender_failed",
                               f"the recommender failed: {type(e).__name__}") from e
            return turn_out(entry, entry.session.commit(pending, rec))

    api = APIRouter(prefix="/api", dependencies=[Depends(require_key)])

    @api.get("/health", response_model=m.HealthOut, tags=["server"])
    async def health() -> m.HealthOut:
        return m.HealthOut(status="ok", recommender=getattr(recommender, "name", "recommender"),
                           tracks=len(catalog), sessions=len(store), queue=queue.stats(),
                           auth=cfg.api_key is not None)

    @api.post("/sessions", response_model=m.SessionCreated, status_code=201, tags=["sessions"])
    async def create_session() -> m.SessionCreated:
        sid, entry = store.create()
        return m.SessionCreated(session_id=sid, client_token=entry.token, limits=m.Limits(
            k=cfg.k, max_k=cfg.max_k, max_message_chars=cfg.max_message_chars,
            max_turns=cfg.max_turns))

    @api.get("/sessions/{sid}", response_model=m.SessionOut, tags=["sessions"])
    async def get_session(sid: str, entry: SessionEntry) -> m.SessionOut:
        s = entry.session
        return m.SessionOut(session_id=sid, turns=len(s.turns), turns_left=s.max_turns - len(s.turns),
                            history=[m.MessageOut(role=x.role, content=x.content) for x in s.history],
                            liked=s.liked, rejected=s.rejected)

    @api.delete("/sessions/{sid}", status_code=204, tags=["sessions"])
    async def delete_session(sid: str, entry: SessionEntry) -> Response:
        store.delete(sid)
        return Response(status_code=204)

    @api.post("/sessions/{sid}/messages", response_model=m.TurnOut, tags=["sessions"])
    async def post_message(body: m.MessageIn, entry: SessionEntry) -> m.TurnOut:
        text = clean_text(body.text)
        if len(text) > cfg.max_message_chars:
            raise ApiError(422, "message_too_long",
                           f"the message has {len(text)} characters; the limit is "
                           f"{cfg.max_message_chars}")
        return await run_turn(entry, lambda: entry.session.prepare_message(text), k_of(body.k))

    @api.post("/sessions/{sid}/feedback", response_model=m.TurnOut, tags=["sessions"])
    async def post_feedback(body: m.FeedbackIn, entry: SessionEntry) -> m.TurnOut:
        return await run_turn(entry, lambda: entry.session.prepare_feedback(
            body.track_id, body.action, catalog.tracks), k_of(body.k))

    @api.get("/tracks/{track_id}", response_model=m.TrackOut, tags=["catalog"])
    async def get_track(track_id: str) -> m.TrackOut:
        if catalog.get(track_id) is None:
            raise ApiError(404, "track_not_found", "no such track in the catalog")
        return m.TrackOut(**track_out(track_id))

    app.include_router(api)

    @app.get("/api/tracks/{track_id}/audio", tags=["catalog"], response_class=FileResponse,
             responses={206: {"description": "Partial content (Range request)"}})
    async def get_audio(track_id: str, credentials: Credentials, header_key: KeyHeader,
                        sig: str | None = None) -> FileResponse:
        # The key or a signature from a turn response (an <audio> element sends no headers).
        if cfg.api_key is not None and not (key_matches(cfg.api_key, credentials, header_key)
                                            or signer.check(track_id, sig)):
            raise ApiError(401, "unauthorized", "missing or wrong API key or audio signature")
        path = catalog.audio_path(track_id)
        if path is None:
            raise ApiError(404, "audio_not_found", "this track has no audio in the catalog")
        return FileResponse(path, media_type=media_type(path))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app
