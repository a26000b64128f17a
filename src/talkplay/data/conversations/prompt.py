"""The LLM generator's prompt (paper appendix A.1) and the validation of its answer.

The prompt lists the playlist (track id -> metadata, tags, lyrics excerpt, pseudo caption,
tempo, key) and a negative set, and asks for a JSON list of ``{"role", "content"}``
messages with one track per assistant turn. ``parse_conversation`` accepts the answer only
if it is such a list with valid roles and music ids from the playlist or the negative set;
music ids from the negative set are recorded as rejections.
"""

from __future__ import annotations

import json
import re

from talkplay.data.conversations.common import tag_set
from talkplay.data.schema import Message, Track

SYSTEM = (
    "You are a creative writer who simulates realistic conversations between a music listener "
    "and a music recommendation assistant. You answer with JSON only."
)
INSTRUCTIONS = """Write a multi-turn conversation in which a user looks for music and an assistant \
recommends tracks, using the playlist below as the tracks the user ends up liking.

Rules:
1. Follow the playlist order. Use only track ids listed under PLAYLIST or NEGATIVE SET.
2. Each turn is: a "user" message, then one "music" message whose content is exactly one track id, \
then an "assistant" message that explains the pick from the track's attributes (genre, mood, era, \
tempo, key, lyrics). One track per assistant turn.
3. The first user message either names a track or artist or describes tags, mood or era. Later user \
messages react to the previous track: positive feedback, a change of direction, or a rejection.
4. Describe what the user wants mostly through attributes, moods and references to earlier tracks \
("more like the last one", "something by an artist similar to X"); rarely give away the exact title \
of the next track.
5. Include {rejections} rejection(s): the assistant proposes a track from the NEGATIVE SET, the user \
turns it down and says why, and the next music message comes from the PLAYLIST again.
6. Use at most {max_turns} music messages. End with an assistant message.

Answer with a JSON list only, e.g.
[{{"role": "user", "content": "..."}}, {{"role": "music", "content": "<track id>"}}, \
{{"role": "assistant", "content": "..."}}, ...]
"""
VALID_ROLES = ("user", "assistant", "music")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
STRUCTURED_NOTE = ('\nThe answer is constrained to a JSON object {"conversations": [...]} holding '
                   "that list.")


MAX_MESSAGE_CHARS = 400
"""Longest user or assistant message the schema allows (it also bounds a grammar-constrained
answer: a small model can otherwise write one string until ``max_tokens``)."""


def conversation_schema(track_ids: list[str], turns: int) -> dict:
    """The JSON schema of one answer, for servers with structured outputs (vLLM and llama.cpp
    turn it into a grammar).

    An object root (OpenAI's strict mode needs one) whose ``conversations`` list is exactly
    ``turns`` times a user message, a music message whose content is one of ``track_ids`` (the
    playlist and the negative set) and an assistant message, so that even a small model writes
    the conversation's shape and valid ids. ``parse_conversation`` still validates everything
    (a server may ignore the schema).
    """
    def message(role: str, content: dict) -> dict:
        return {"type": "object", "additionalProperties": False, "required": ["role", "content"],
                "properties": {"role": {"type": "string", "enum": [role]}, "content": content}}

    text = {"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE_CHARS}
    turn = [message("user", text), message("music", {"type": "string", "enum": list(track_ids)}),
            message("assistant", text)]
    return {"type": "object", "additionalProperties": False, "required": ["conversations"],
            "properties": {"conversations": {"type": "array", "prefixItems": turn * turns,
                                             "items": False, "minItems": 3 * turns,
                                             "maxItems": 3 * turns}}}


RESPONSE_FORMATS = ("json_schema", "json_object")
"""How servers take a schema: OpenAI, vLLM and llama.cpp's own server use ``json_schema``;
llama-cpp-python's server takes ``{"type": "json_object", "schema": ...}``."""


def response_format(dialect: str, track_ids: list[str], turns: int) -> dict:
    """The ``response_format`` request field carrying ``conversation_schema`` in ``dialect``
    (one of ``RESPONSE_FORMATS``)."""
    schema = conversation_schema(track_ids, turns)
    if dialect == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": "conversation", "strict": True, "schema": schema}}
    if dialect == "json_object":
        return {"type": "json_object", "schema": schema}
    raise ValueError(f"unknown response_format dialect {dialect!r}")


def pseudo_caption(track: Track) -> str:
    """A one-sentence caption from a track's attributes (stands in for the paper's audio captions)."""
    tags = sorted(tag_set(track))
    parts = [f"A {', '.join(tags[:4])} track" if tags else "A track"]
    if track.year:
        parts.append(f"from {track.year}")
    if track.tempo:
        parts.append(f"at about {round(track.tempo)} BPM")
    if track.key:
        parts.append(f"in {track.key}")
    return " ".join(parts) + "."


def track_block(track: Track, lyrics_chars: int = 200) -> str:
    """The prompt lines for one track."""
    lines = [f"- id: {track.id}", f"  title: {track.title}"]
    if track.artists:
        lines.append(f"  artist: {track.artist}")
    if track.album:
        lines.append(f"  album: {track.album}")
    if track.year:
        lines.append(f"  year: {track.year}")
    tags = track.tags or track.pseudo_tags
    if tags:
        lines.append(f"  tags: {', '.join(tags[:10])}")
    if track.tempo:
        lines.append(f"  tempo: {round(track.tempo)} BPM")
    if track.key:
        lines.append(f"  key: {track.key}")
    if track.lyrics and lyrics_chars > 0:
        excerpt = " ".join(track.lyrics.split())[:lyrics_chars]
        lines.append(f"  lyrics excerpt: {json.dumps(excerpt, ensure_ascii=False)}")
    lines.append(f"  pseudo caption: {pseudo_caption(track)}")
    return "\n".join(lines)


def build_messages(playlist: list[Track], negatives: list[Track], *, rejections: int,
                   max_turns: int, lyrics_chars: int = 200, structured: bool = False) -> list[dict]:
    """Chat-completions messages asking for one conversation.

    Args:
        playlist: the tracks to recommend, in order.
        negatives: the negative set (tracks outside the playlist).
        rejections: how many rejections to ask for.
        max_turns: most music messages.
        lyrics_chars: characters of lyrics per track.
        structured: the answer is constrained to ``conversation_schema`` (says so, since its
            root is an object holding the list).
    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}]``.
    """
    body = INSTRUCTIONS.format(rejections=rejections, max_turns=max_turns)
    if structured:
        body += STRUCTURED_NOTE
    body += "\nPLAYLIST:\n" + "\n".join(track_block(t, lyrics_chars) for t in playlist)
    if negatives:
        body += "\n\nNEGATIVE SET:\n" + "\n".join(track_block(t, lyrics_chars) for t in negatives)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


class InvalidOutput(ValueError):
    """The model's answer is not a usable conversation; ``str()`` says why."""


def extract_json(text: str):
    """The JSON value in a model answer, tolerating a fenced ```json block or surrounding prose."""
    fenced = _FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    start, end = candidate.find("["), candidate.rfind("]")
    if start == -1:
        raise InvalidOutput("no JSON list found in the answer")
    snippet = candidate[start:end + 1] if end > start else candidate[start:]
    try:
        return json.loads(snippet)
    except json.JSONDecodeError as e:
        raise InvalidOutput(f"not valid JSON (truncated?): {e.msg} at char {e.pos}") from None


def parse_conversation(text: str, playlist_ids: set[str], negative_ids: set[str]
                       ) -> tuple[list[Message], dict]:
    """Validate a model answer and turn it into messages plus meta.

    Args:
        text: the model's answer.
        playlist_ids: ids of the playlist's tracks.
        negative_ids: ids of the negative set.
    Returns:
        (messages, meta) with ``meta["rejected"]`` (indices of negative-set music messages)
        and ``meta["feedback"]`` (one label per user message: "start", "reject" after a
        rejected track, otherwise "unlabelled").
    Raises:
        InvalidOutput: with the reason.
    """
    data = extract_json(text)
    if isinstance(data, dict) and isinstance(data.get("conversations"), list):
        data = data["conversations"]  # talkplay-db-style wrapper
    if not isinstance(data, list) or not data:
        raise InvalidOutput("answer is not a non-empty JSON list")
    msgs: list[Message] = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "role" not in item or "content" not in item:
            raise InvalidOutput(f"message {i} is not an object with role and content")
        role, content = item["role"], item["content"]
        if role not in VALID_ROLES:
            raise InvalidOutput(f"message {i} has invalid role {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise InvalidOutput(f"message {i} has empty or non-text content")
        content = content.strip()
        if role == "music" and content not in playlist_ids and content not in negative_ids:
            raise InvalidOutput(f"message {i} has unknown music id {content!r}")
        msgs.append(Message(role, content))
    if msgs[0].role != "user":
        raise InvalidOutput("the conversation does not start with a user message")
    rejected: list[int] = []
    feedback: list[str] = []
    turn_tracks, last_rejected = 0, False
    for i, m in enumerate(msgs):
        if m.role == "user":
            feedback.append("start" if not feedback else "reject" if last_rejected else "unlabelled")
            turn_tracks = 0
        elif m.role == "music":
            turn_tracks += 1
            if turn_tracks > 1:
                raise InvalidOutput(f"message {i}: more than one track in one assistant turn")
            last_rejected = m.content in negative_ids
            if last_rejected:
                rejected.append(i)
    if not any(m.role == "music" and m.content in playlist_ids for m in msgs):
        raise InvalidOutput("no track from the playlist")
    return msgs, {"rejected": rejected, "feedback": feedback}
