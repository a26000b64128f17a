"""Reciprocal-rank fusion (Cormack et al. 2009): the textbook way to combine rankings.

``score(t) = sum over systems of 1 / (c + rank_s(t))`` with the standard constant c = 60 and
equal weights: nothing is tuned. It is the baseline a learned hybrid must beat.
"""

from __future__ import annotations

from talkplay.data.schema import Message
from talkplay.recommend.protocol import Recommendation, ScoredTrack

RRF_CONSTANT = 60
DEPTH = 200
"""Tracks taken from each system's ranking."""


def history_key(history: list[Message], exclude: set[str] | None) -> tuple:
    """A hashable key of one query (the messages with their feedback, and the exclusions)."""
    return (tuple((m.role, m.content, m.feedback) for m in history), frozenset(exclude or ()))


def prepare_all(systems, histories: list[list[Message]]) -> None:
    """Call the optional ``prepare(histories)`` of each system (see ``evaluate.run``)."""
    for s in systems:
        prepare = getattr(s, "prepare", None)
        if callable(prepare):
            prepare(histories)


class Memo:
    """Remembers a recommender's rankings per query, so systems built on the same component
    (talkplay-beam, rrf, the hybrid's beam proposals) compute it once per target.

    A cached ranking serves any request for at most as many tracks as it holds; every request
    asks the system for at least ``depth`` tracks (what rrf takes), so the first call, whoever
    makes it, is deep enough for the others.
    """

    def __init__(self, system, depth: int = DEPTH):
        self.system = system
        self.depth = depth
        self.name = getattr(system, "name", "memo")
        self.description = getattr(system, "description", self.name)
        self._seen: dict[tuple, Recommendation] = {}

    def __getattr__(self, attr):  # everything else (cfg, mode, prompt, ...) is the system's
        return getattr(self.system, attr)

    def prepare(self, histories: list[list[Message]]) -> None:
        prepare_all([self.system], histories)

    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        key = history_key(history, exclude)
        hit = self._seen.get(key)
        if hit is None or len(hit.tracks) < k:
            hit = self.system.recommend(history, k=max(k, self.depth), exclude=exclude)
            self._seen[key] = hit
        return Recommendation(hit.tracks[:k], hit.reply, hit.info)


class RRFRecommender:
    """Fuses the rankings of several recommenders."""

    def __init__(self, systems: dict, name: str = "rrf", constant: int = RRF_CONSTANT):
        self.systems = systems
        self.name = name
        self.constant = constant
        self.description = (f"reciprocal-rank fusion (c={constant}, equal weights) of "
                            f"{', '.join(systems)}")

    def prepare(self, histories: list[list[Message]]) -> None:
        prepare_all(self.systems.values(), histories)

    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        score: dict[str, float] = {}
        for s in self.systems.values():
            rec = s.recommend(history, k=max(k, DEPTH), exclude=exclude)
            for rank, t in enumerate(rec.tracks, start=1):
                score[t.track_id] = score.get(t.track_id, 0.0) + 1.0 / (self.constant + rank)
        order = sorted(score, key=lambda t: -score[t])  # stable: first system's order breaks ties
        return Recommendation([ScoredTrack(t, score[t]) for t in order[:k]])
