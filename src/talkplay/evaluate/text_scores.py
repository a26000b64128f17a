"""The model's text score of a candidate track: how much the conversation raises the
likelihood of its name.

Music tokens cannot tell apart tracks that share codes (new tracks without a playlist code
share their other four codes with several others), and the model's knowledge of songs and
artists from pretraining lives in text, not in the new tokens. So the hybrid also asks the
same fine-tuned model for the log-probability of each candidate's name, written as the
assistant's next words::

    <assistant> Title by Artist

against the same name after a request that says nothing ("Recommend a song."): the pointwise
mutual information ``log p(name | conversation) - log p(name | null request)``. The second
term is the name's prior (short and common names are likely anywhere); it depends only on the
track, so it is computed once per track and kept. Tracks without a title (CPCD goal tracks
with no metadata) have no name to score (``NO_TEXT``).

Both terms come from ``engine.score_sequences``: the candidates' names packed as one prefix
trie after the shared prompt cache, so a pool costs one forward of its names' tokens.
"""

from __future__ import annotations

import numpy as np

from talkplay.data.schema import Message, Track
from talkplay.lm.render import encode_text
from talkplay.recommend.engine import score_sequences

NULL_REQUEST = "Recommend a song."
"""The user's request of the null conversation whose name likelihoods are the prior."""
NO_TEXT = -np.inf
"""The score of a track without a title."""


def track_text(track: Track | None) -> str | None:
    """"Title by Artist, Artist" (the title alone without artists); None without a title."""
    if track is None or not (track.title or "").strip():
        return None
    title = " ".join(track.title.split())
    return f"{title} by {', '.join(track.artists)}" if track.artists else title


class TextScorer:
    """PMI of catalog tracks' names given a conversation, from a ``TalkPlayRecommender``'s
    model (see the module docstring)."""

    def __init__(self, talkplay, tracks: list[Track]):
        """Args:
            talkplay: the recommender (its model, tokenizer, prompt and prompt cache).
            tracks: the catalog's tracks (any order; those of its codebook are used).
        """
        self.tp = talkplay
        by_id = {t.id: t for t in tracks}
        self.texts = [track_text(by_id.get(i)) for i in talkplay.codebook.item_ids]
        self._tokens: dict[int, list[int]] = {}
        self._prior: dict[int, float] = {}
        self._null = None

    def tokens(self, row: int) -> list[int] | None:
        """The name's token ids as the assistant's first words (None without a name)."""
        if self.texts[row] is None:
            return None
        if row not in self._tokens:
            self._tokens[row] = encode_text(self.tp.tokenizer, " " + self.texts[row])
        return self._tokens[row]

    def prompt(self, history: list[Message]) -> list[int]:
        """The recommender's prompt without its ``<start_of_music>``: the name is written
        where the assistant's turn begins."""
        return self.tp.prompt(history)[0][:-1]

    def state(self, history: list[Message]):
        """The model's state after ``prompt(history)`` (through the recommender's cache)."""
        return self.tp._prompt_state(self.prompt(history))

    def priors(self, rows: np.ndarray) -> np.ndarray:
        """float64 [n]: log p(name | null request) of each row (computed once per track)."""
        todo = [int(r) for r in dict.fromkeys(rows.tolist())
                if int(r) not in self._prior and self.tokens(int(r)) is not None]
        if todo:
            if self._null is None:
                self._null = self.state([Message(role="user", content=NULL_REQUEST)])
            got = score_sequences(self.tp.model, self._null, [self.tokens(r) for r in todo])
            self._prior.update(zip(todo, got.tolist(), strict=True))
        return np.array([self._prior.get(int(r), np.nan) for r in rows])

    def scores(self, history: list[Message], rows: np.ndarray, state=None) -> np.ndarray:
        """float64 [n]: each row's PMI given ``history``; ``NO_TEXT`` for a track without a
        name. ``state``: the state after ``prompt(history)`` when the caller has it."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full(len(rows), NO_TEXT)
        named = [i for i, r in enumerate(rows) if self.tokens(int(r)) is not None]
        if not named:
            return out
        state = state if state is not None else self.state(history)
        got = score_sequences(self.tp.model, state, [self.tokens(int(rows[i])) for i in named])
        out[named] = got - self.priors(rows[named])
        return out
