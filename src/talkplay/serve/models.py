"""Request and response bodies of the HTTP API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Hard caps on top of the configurable limits, so a field can never be unbounded.
TEXT_CAP = 100_000
ID_CAP = 512


class ErrorOut(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. 'message_too_long'.")
    detail: str = Field(description="What went wrong, for people.")


class Limits(BaseModel):
    k: int
    max_k: int
    max_message_chars: int
    max_turns: int


class SessionCreated(BaseModel):
    session_id: str
    client_token: str = Field(description="Send as X-Session-Token on every call for this session.")
    limits: Limits


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=TEXT_CAP, description="The user's message.")
    k: int | None = Field(None, ge=1, description="Tracks to return (default: the server's k).")


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    track_id: str = Field(min_length=1, max_length=ID_CAP,
                          description="A track recommended earlier in this session.")
    action: Literal["like", "skip"]
    k: int | None = Field(None, ge=1)


class TrackOut(BaseModel):
    id: str
    title: str
    artists: list[str]
    album: str | None
    year: int | None
    tags: list[str]
    duration_ms: int | None
    has_audio: bool
    audio_url: str | None = Field(None, description="Where to stream the audio (when it exists).")


class RecommendedTrack(TrackOut):
    rank: int
    score: float
    tokens: str | None = Field(None, description="The music tokens that produced it (TalkPlay).")


class FeedbackOut(BaseModel):
    action: Literal["like", "skip"]
    track_id: str


class TurnOut(BaseModel):
    turn: int = Field(description="0-based index of this turn in the session.")
    request: str = Field(description="The user message of the turn (feedback is stated as text).")
    reply: str = Field(description="The recommender's text (retrieval baselines answer from a "
                                   "template over the first track's catalog facts).")
    tracks: list[RecommendedTrack]
    feedback: FeedbackOut | None = None
    turns_left: int
    info: dict = Field(default_factory=dict, description="Recommender diagnostics.")


class MessageOut(BaseModel):
    role: str
    content: str


class SessionOut(BaseModel):
    session_id: str
    turns: int
    turns_left: int
    history: list[MessageOut]
    liked: list[str]
    rejected: list[str]


class HealthOut(BaseModel):
    status: Literal["ok"]
    recommender: str
    tracks: int
    sessions: int
    queue: dict[str, int | dict[str, int]]
    auth: bool = Field(description="Whether an API key is required.")
