"""Replies in words for systems that only rank (the retrieval baselines), from catalog facts.

A served baseline answers like TalkPlay does: a short sentence about its first track. Every
phrase comes from that track's own fields (title, artists, and ``describe``'s attribute
slots: tags, era from the release year, tempo, album), so the reply never claims anything the
catalog does not say. The wording is seeded by the track id: the same track, the same reply.
"""

from __future__ import annotations

import random
import zlib

from talkplay.data.conversations.describe import describe, fix_articles
from talkplay.data.schema import Message, Track
from talkplay.recommend.protocol import Recommendation


def template_reply(track: Track) -> str:
    """"Here is Title by Artist: a mellow jazz tune from the 60s." (facts of ``track`` only)."""
    rng = random.Random(zlib.crc32(track.id.encode()))
    name = track.title or "this track"
    if track.artists:
        name += f" by {', '.join(track.artists)}"
    return fix_articles(f"Here is {name}: {describe(track, rng)}.")


class TemplateReplies:
    """A recommender that ranks without words, answering with ``template_reply``."""

    def __init__(self, system, tracks: dict[str, Track]):
        """Args:
            system: any ``Recommender`` (its replies, if it writes any, are kept).
            tracks: the catalog, id -> track.
        """
        self.system = system
        self.tracks = tracks
        self.name = getattr(system, "name", "baseline")

    def __getattr__(self, item):  # description, ids, prepare ... of the wrapped system
        return getattr(self.system, item)

    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        rec = self.system.recommend(history, k=k, exclude=exclude)
        if not rec.reply.strip() and rec.tracks and rec.tracks[0].track_id in self.tracks:
            rec.reply = template_reply(self.tracks[rec.tracks[0].track_id])
        return rec
