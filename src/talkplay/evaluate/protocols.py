"""Evaluation protocols: which turns are scored, with what history, against which gold.

**paper** (TalkPlay, Doh et al. 2025): in every test conversation, each ``music`` message that
the user did not reject (``Conversation.meta["rejected"]`` lists rejected message indices) is
one target. The recommender sees the messages before it (earlier music turns included); gold
is that one track. Tracks already in the history are excluded from the predictions (option);
a target whose gold track already occurred in its history is then skipped. A rejected music
message stays in the history marked ``Message.feedback == "rejected"`` (baselines never take it
as evidence). An assistant message that names the target track before it is played (its id or
title) would show the answer to the systems that read assistant text: it is dropped from that
target's history, for every system alike, and counted (``Target.dropped_assistant``).

**cpcd** (official eval.py of the Conversational Playlist Curation Dataset): every turn of a
test conversation is a target. Gold is the whole goal playlist minus the *seed tracks* (the
first 3 liked tracks of every earlier turn); seeds are removed from the predictions as well;
a turn with no gold left is skipped. The history shows the dialogue up to and including the
turn's user query, with only the seed tracks as music messages (later liked tracks are gold
and must not leak). Turn structure comes from ``meta["turns"]`` (written by the CPCD importer:
per turn the liked / disliked track ids and the message index of the user query) and
``meta["goal_playlist"]``; without them it is derived from the messages (a user message starts
a turn; the music messages after it are its liked tracks, rejected ones its disliked tracks).

Tracks of one cluster (``Track.cluster_id``) count once in both protocols.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from talkplay.data.dataset import Dataset
from talkplay.data.schema import REJECTED, Conversation, Message, Track

log = logging.getLogger(__name__)
PROTOCOLS: tuple[str, ...] = ("paper", "cpcd")
SEEDS_PER_TURN = 3


@dataclass
class Target:
    """One prediction to make and score."""

    conversation_id: str
    turn_index: int
    """0-based: the number of user messages before the target, minus one (paper), or the
    CPCD turn index (cpcd)."""
    history: list[Message]
    gold: list[str]
    exclude: set[str] = field(default_factory=set)
    """Track ids that must not be predicted (already played / seed tracks)."""
    cold: bool = False
    """True when the gold track (all gold tracks, for a set) is cold."""
    position: int = 0
    """Unique within the conversation: the target message index (paper) or turn index (cpcd)."""
    dropped_assistant: int = 0
    """(paper) assistant messages removed from the history because they name the target track
    before it is played (e.g. an LLM-written reply announcing the next song)."""

    @property
    def docid(self) -> str:
        """``<dialog_id>:<position>``; for cpcd the official ``<dialog_id>:<turn_index>``."""
        return f"{self.conversation_id}:{self.position}"


def cluster_map(ds: Dataset) -> dict[str, str]:
    """Track id -> cluster id for tracks that have one (empty when the catalog has none)."""
    return {t.id: t.cluster_id for t in ds.tracks if t.cluster_id}


def resolve_protocol(ds: Dataset, name: str) -> str:
    """"auto" -> "cpcd" when the dataset manifest's source names CPCD, else "paper".

    Raises:
        ValueError: an unknown protocol name.
    """
    if name == "auto":
        source = str(ds.manifest.get("source", "")).lower()
        cpcd = "cpcd" in source or any(c.source == "cpcd" for c in ds.conversations[:50])
        return "cpcd" if cpcd else "paper"
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; expected auto, {', '.join(PROTOCOLS)}")
    return name


def _test_conversations(ds: Dataset, split: str, limit: int | None) -> list[Conversation]:
    convs = [c for c in ds.conversations if c.split == split]
    return convs[:limit] if limit is not None else convs


def paper_targets(ds: Dataset, *, split: str = "test", exclude_history: bool = True,
                  limit: int | None = None) -> list[Target]:
    """Targets of the paper protocol (see the module docstring).

    Args:
        ds: the dataset.
        split: which conversations to evaluate.
        exclude_history: exclude tracks already in the history from the predictions.
        limit: at most this many conversations (first ones, in dataset order).
    Returns:
        Targets in conversation order.
    """
    tracks = ds.track_index()
    out: list[Target] = []
    skipped = leaks = 0
    for conv in _test_conversations(ds, split, limit):
        rejected = set(conv.meta.get("rejected", []))
        for i, msg in enumerate(conv.messages):
            if msg.role != "music" or i in rejected:
                continue
            history = [Message(m.role, m.content, REJECTED if j in rejected else None)
                       if m.role == "music" else m
                       for j, m in enumerate(conv.messages[:i]) if m.role != "system"]
            seen = {m.content for m in history if m.role == "music"}
            if exclude_history and msg.content in seen:
                skipped += 1
                continue
            track = tracks.get(msg.content)
            kept = [m for m in history if not (m.role == "assistant"
                                               and names_track(m.content, track, msg.content))]
            leaks += len(history) - len(kept)
            users = sum(m.role == "user" for m in kept)
            out.append(Target(conv.id, max(users - 1, 0), kept, [msg.content],
                              seen if exclude_history else set(),
                              cold=bool(track and track.cold), position=i,
                              dropped_assistant=len(history) - len(kept)))
    if skipped:
        log.info("paper protocol: skipped %d targets whose track was already played", skipped)
    if leaks:
        log.warning("paper protocol: dropped %d assistant messages that name the next target "
                    "track before it is played (hidden from every system alike)", leaks)
    return out


def names_track(text: str, track: Track | None, track_id: str) -> bool:
    """True when ``text`` names the track: its id, or its title as whole words (case-insensitive;
    titles shorter than 4 characters are not matched, they are too often ordinary words)."""
    low = text.lower()
    if track_id and track_id.lower() in low:
        return True
    title = (track.title if track else "").strip().lower()
    if len(title) < 4:
        return False
    return re.search(r"(?<!\w)" + re.escape(title) + r"(?!\w)", low) is not None


def _pick(d: dict, *names: str, default=None):
    for n in names:
        if n in d:
            return d[n]
    return default


def conversation_turns(conv: Conversation) -> list[dict]:
    """Per-turn structure: ``[{"user_index": int | None, "liked": [...], "disliked": [...]}]``.

    Read from ``conv.meta["turns"]`` when present (keys ``liked``/``liked_results``,
    ``disliked``/``disliked_results``, ``user_index``/``query_index``/``message_index``),
    else derived from the messages.
    """
    meta_turns = conv.meta.get("turns")
    if meta_turns:
        return [{"user_index": _pick(t, "user_index", "query_index", "message_index",
                                     "user_message_index"),
                 "liked": list(_pick(t, "liked", "liked_results", default=[]) or []),
                 "disliked": list(_pick(t, "disliked", "disliked_results", default=[]) or [])}
                for t in meta_turns]
    rejected = set(conv.meta.get("rejected", []))
    turns: list[dict] = []
    for i, m in enumerate(conv.messages):
        if m.role == "user":
            turns.append({"user_index": i, "liked": [], "disliked": []})
        elif m.role == "music":
            if not turns:  # music before any user message: a turn without a query
                turns.append({"user_index": None, "liked": [], "disliked": []})
            turns[-1]["disliked" if i in rejected else "liked"].append(m.content)
    return turns


def _history_end(conv: Conversation, turns: list[dict], t: int) -> int:
    """Index one past the last message the recommender may see at turn ``t``."""
    ui = turns[t]["user_index"]
    if ui is not None:
        return int(ui) + 1
    # No query index: everything before the first of this turn's tracks.
    mine = set(turns[t]["liked"]) | set(turns[t]["disliked"])
    for i, m in enumerate(conv.messages):
        if m.role == "music" and m.content in mine:
            return i
    return len(conv.messages)


def cpcd_targets(ds: Dataset, *, split: str = "test", seeds_per_turn: int = SEEDS_PER_TURN,
                 limit: int | None = None) -> list[Target]:
    """Targets of the CPCD protocol (see the module docstring).

    Args:
        ds: the dataset.
        split: which conversations to evaluate.
        seeds_per_turn: liked tracks of each earlier turn that become seeds (official: 3).
        limit: at most this many conversations.
    Returns:
        Targets; ``gold`` is the goal playlist minus seeds (cluster-wise), ``exclude`` the seeds.
    """
    clusters = cluster_map(ds)
    tracks = ds.track_index()
    playlists = {p.id: p.track_ids for p in ds.playlists}
    out: list[Target] = []
    for conv in _test_conversations(ds, split, limit):
        turns = conversation_turns(conv)
        goal = conv.meta.get("goal_playlist") or playlists.get(conv.playlist_id or "")
        if not goal:
            goal = [tid for t in turns for tid in t["liked"]]
        seeds: list[str] = []
        for ti in range(len(turns)):
            if ti > 0:
                seeds.extend(turns[ti - 1]["liked"][:seeds_per_turn])
            seed_clusters = {clusters.get(s, s) for s in seeds}
            gold = [g for g in goal if clusters.get(g, g) not in seed_clusters]
            if not gold:
                continue
            seed_set = set(seeds)
            end = _history_end(conv, turns, ti)
            history = [m for m in conv.messages[:end] if m.role not in ("system",)
                       and (m.role != "music" or m.content in seed_set)]
            cold = all(g in tracks and tracks[g].cold for g in gold)
            out.append(Target(conv.id, ti, history, gold, seed_set, cold=cold, position=ti))
    return out


def build_targets(ds: Dataset, protocol: str, *, split: str = "test", limit: int | None = None,
                  exclude_history: bool = True) -> list[Target]:
    """Targets of ``protocol`` ("paper" or "cpcd"; resolve "auto" first with resolve_protocol)."""
    if protocol == "paper":
        return paper_targets(ds, split=split, exclude_history=exclude_history, limit=limit)
    if protocol == "cpcd":
        return cpcd_targets(ds, split=split, limit=limit)
    raise ValueError(f"unknown protocol {protocol!r}")


COLD_GAP_MIN = 0.05
"""Test cold share from which ``cold_gap`` compares valid with it."""


def cold_gap(valid: list[Target], test: list[Target]) -> str | None:
    """A warning when the valid targets hold far fewer cold tracks than the test targets (under
    half their share, test at least ``COLD_GAP_MIN``): choices fit on such a valid split cannot
    see how a system ranks tracks new to the catalog. None when the shares are comparable."""
    if not valid or not test:
        return None
    v = sum(t.cold for t in valid) / len(valid)
    t = sum(t.cold for t in test) / len(test)
    if t < COLD_GAP_MIN or v >= t / 2:
        return None
    return (f"{v:.1%} of the {len(valid)} valid targets are cold (new to the catalog) against "
            f"{t:.1%} of the {len(test)} test targets: what is fit on valid cannot see how cold "
            "tracks rank; carve the valid split as the test split is carved (new tracks in its "
            "window too)")
