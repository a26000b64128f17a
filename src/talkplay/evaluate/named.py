"""Artists the conversation names: exact evidence for the hybrid ("something seven mary three",
"can you find toad the wet sprocket").

In real music conversations users name artists all the time (on the shared CPCD file, 42% of
the validation turns name an artist of a wanted track in the latest request, 58% in some
request so far). BM25 sees those words too, but as a few terms among the whole conversation's,
weighed against title and album words; the dense retriever blurs them. This component
answers one question per track: *does the conversation name this track's artist, and how
recently?* A track scores ``decay ** a`` for the most recent user message naming one of its
artists (``a`` user turns back from the latest, as in ``baselines.common.query_parts``), else 0.

Matching is on whole words after normalisation (accents folded, case and punctuation dropped),
over every word n-gram of a message up to the longest artist name. Names shorter than
``min_chars`` characters never match. Some artist names are ordinary words ("Next", "Yes",
"Future", "Live"); the training conversations tell which: a name that training requests
mention at least ``min_mentions`` times but whose answer holds a track of that artist in fewer
than ``min_precision`` of them is ignored. Only training conversations are read.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import numpy as np

from talkplay.data.dataset import Dataset
from talkplay.data.schema import Message

_NON_WORD = re.compile(r"[\W_]+")


def normalize(text: str | None) -> str:
    """Lower case, accents folded ("Beyoncé" -> "beyonce"), every run of non-word characters
    one space, stripped."""
    folded = unicodedata.normalize("NFKD", text or "")
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", folded.lower()).strip()


class NamedArtists:
    """Scores each catalog track by how recently the conversation named one of its artists."""

    name = "named"

    def __init__(self, ids: list[str], artists: list[list[str]],
                 training: list[list[Message]] = (), *, decay: float = 0.5,
                 min_chars: int = 3, min_mentions: int = 3, min_precision: float = 0.2):
        """Args:
            ids: catalog track ids (row order).
            artists: each track's artist names, in ``ids`` order.
            training: training conversations' messages, to find names that are ordinary words.
            decay: weight multiplier per user turn of age.
            min_chars: shortest name (normalised) that can match.
            min_mentions, min_precision: a name mentioned at least ``min_mentions`` times in
                training requests whose answers hold its artist in fewer than ``min_precision``
                of them is ignored.
        """
        self.ids = ids
        self.decay = decay
        self.track_names = [{normalize(a) for a in names} for names in artists]
        rows: dict[str, list[int]] = {}
        for r, names in enumerate(self.track_names):
            for key in names:
                if len(key) >= min_chars:
                    rows.setdefault(key, []).append(r)
        self.rows = {k: np.asarray(v, dtype=np.int64) for k, v in rows.items()}
        self.max_words = max((k.count(" ") + 1 for k in self.rows), default=0)
        mentions, hits = self._precision(training)
        self.ignored = {k: (mentions[k], hits[k]) for k in mentions
                        if mentions[k] >= min_mentions and hits[k] < min_precision * mentions[k]}
        """name -> (training mentions, mentions whose answer held the artist), not matched."""
        for k in self.ignored:
            del self.rows[k]
        self.description = (f"artists named in the conversation ({len(self.rows)} names; "
                            f"{len(self.ignored)} ignored as ordinary words in training requests)")

    def names_in(self, text: str) -> set[str]:
        """The catalog artist names that ``text`` contains as whole words."""
        words = normalize(text).split()
        found = set()
        for n in range(1, min(self.max_words, len(words)) + 1):
            for i in range(len(words) - n + 1):
                gram = " ".join(words[i:i + n])
                if gram in self.rows:
                    found.add(gram)
        return found

    def _precision(self, training: list[list[Message]]) -> tuple[Counter, Counter]:
        """Per name: training requests naming it, and those whose answer held a track of it."""
        row_of = {t: i for i, t in enumerate(self.ids)}
        mentions, hits = Counter(), Counter()
        for messages in training:
            for i, m in enumerate(messages):
                if m.role != "user":
                    continue
                answer: set[str] = set()
                for later in messages[i + 1:]:
                    if later.role == "user":
                        break
                    if later.role == "music" and later.content in row_of:
                        answer |= self.track_names[row_of[later.content]]
                if not answer:
                    continue  # a request nothing answered says nothing about its names
                for name in self.names_in(m.content):
                    mentions[name] += 1
                    hits[name] += name in answer
        return mentions, hits

    def scores(self, history: list[Message]) -> np.ndarray:
        """float64 [n_items]: ``decay ** a`` for the latest user message (``a`` turns back)
        naming one of the track's artists, 0 for tracks never named."""
        out = np.zeros(len(self.ids))
        users = [m.content for m in history if m.role == "user"]
        for age, text in enumerate(reversed(users)):
            weight = self.decay ** age
            for name in self.names_in(text):
                rows = self.rows[name]
                out[rows] = np.maximum(out[rows], weight)
        return out


def build_named(ds: Dataset, options=None) -> NamedArtists:
    """The named-artist component over ``ds``'s catalog, ordinary words learned from its
    training conversations (``options.decay`` as the retrieval baselines use it)."""
    decay = getattr(options, "decay", 0.5)  # None: the baselines' default
    training = [c.messages for c in ds.conversations if c.split == "train"]
    return NamedArtists([t.id for t in ds.tracks], [t.artists for t in ds.tracks], training,
                        decay=decay)
