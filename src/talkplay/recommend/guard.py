"""Reply guard: while a reply is written, the catalog's claim words that are false of the track
it is about cannot be generated.

A reply can state checkable facts about its track: a tag or genre word of the catalog's
vocabulary, a decade, a year (``lm.facts.claim_tags`` / ``true_tags`` / ``decade_forms`` say
which; ``evaluate.replies.ClaimChecker`` checks replies with the same definitions). The guard
turns every such word that is *false* for the chosen track into banned token sequences (as a
word after a space, capitalised after a space, and capitalised at the start of a line), the way
Hugging Face's ``NoBadWordsLogitsProcessor`` does: the last token of a sequence is banned when
the tokens before it were just generated. True words, the track's own names and everything
outside the catalog's vocabulary stay free.

Lyrics are guarded the other way round, because any word can be a lyric: once a reply opens a
quotation in a sentence about lyrics ('the lyrics keep coming back to "'), only the words of
the facts line's "lyrics:" part (``describe.lyric_words``: words of the track's own lyrics) and
then the closing quote can be written; a track without lyric words cannot be said to have
lyrics at all ("lyric" and "lyrics" are banned words for it).

It is a decoding constraint, not a property of the model: ``GenerateConfig.reply_guard`` (on by
default, ``talkplay evaluate --no-reply-guard`` measures the model alone). Its side effects: a
banned one-token word also bans longer words that the tokenizer starts with the same token
("pop" and "popular" when "popular" is split as " pop" + "ular"); a word spelled in an
unusual tokenization slips through, and so does the first year of the track's own decade (1990
for a 1994 track: its tokens begin "1990s", which is true).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from talkplay.data.conversations.describe import lyric_words
from talkplay.data.schema import Track
from talkplay.lm.facts import DECADES, YEARS, claim_tags, decade_forms, true_tags

_OPEN_LYRIC_QUOTE = re.compile(r"\blyric[^.!?\"\u201c]*[\"\u201c]([^\"\u201d]*)$", re.IGNORECASE)
"""A quotation opened in a sentence about lyrics and not yet closed (as ``evaluate.replies``
finds quoted lyrics); group 1: what is quoted so far."""


def _variants(phrase: str) -> list[str]:
    cap = phrase[:1].upper() + phrase[1:]
    forms = [" " + phrase, " " + cap, cap]
    if phrase in DECADES:  # "the 80's" is the same claim as "the 80s"
        forms += [" " + phrase[:-1] + "'s", phrase[:-1] + "'s"]
    return forms


class ReplyGuard:
    """Banned token sequences per track, over one catalog and one tokenizer.

    Args:
        tokenizer: the run's tokenizer.
        tracks: the catalog (its tags make the vocabulary of claims).
    """

    def __init__(self, tokenizer, tracks: Iterable[Track]):
        self.tracks = {t.id: t for t in tracks}
        self.tokenizer = tokenizer
        self.tags = sorted(claim_tags(self.tracks.values()))
        self._ids: dict[str, list[tuple[int, ...]]] = {}
        self._sorted: tuple[list[str], list[int]] | None = None

    def _sequences(self, phrase: str) -> list[tuple[int, ...]]:
        if phrase not in self._ids:
            seqs = {tuple(self.tokenizer(v, add_special_tokens=False)["input_ids"])
                    for v in _variants(phrase)}
            self._ids[phrase] = [s for s in seqs if s]
        return self._ids[phrase]

    def false_words(self, track: Track) -> list[str]:
        """The claim words that are false of ``track``: catalog tags it lacks, other decades,
        other years (every decade and year when its year is unknown), and "lyric(s)" when it
        has no lyric words. The year that starts the track's own decade stays free: its tokens
        begin the decade ("1990" of "1990s")."""
        mine = true_tags(track)
        decades = decade_forms(track.year)
        return ([t for t in self.tags if t not in mine]
                + [d for d in DECADES if d not in decades]
                + [str(y) for y in YEARS if y != track.year and f"{y}s" not in decades]
                + ([] if lyric_words(track.lyrics) else ["lyrics", "lyric"]))

    def _strings(self) -> tuple[list[str], list[int]]:
        """Every token's text, sorted, with its id (built on the first quoted lyric)."""
        if self._sorted is None:
            texts = [self.tokenizer.decode([i]) for i in range(len(self.tokenizer))]
            order = sorted(range(len(texts)), key=texts.__getitem__)
            self._sorted = ([texts[i] for i in order], order)
        return self._sorted

    def _quote_tokens(self, quoted: str, words: Sequence[str]) -> set[int]:
        """Tokens that keep ``quoted`` (an open quotation) on the way to one of ``words``
        followed by the closing quote (and whatever the token adds after it)."""
        texts, ids = self._strings()
        out: set[int] = set()
        for word in words:
            for form in {word, word[:1].upper() + word[1:]}:
                target = form + '"'
                if not target.startswith(quoted):
                    continue
                rest = target[len(quoted):]
                for j in range(1, len(rest) + 1):  # a token that is a prefix of the rest
                    lo = bisect.bisect_left(texts, rest[:j])
                    while lo < len(texts) and texts[lo] == rest[:j]:
                        out.add(ids[lo])
                        lo += 1
                lo = bisect.bisect_left(texts, rest)  # a token that closes and goes on
                while lo < len(texts) and texts[lo].startswith(rest):
                    out.add(ids[lo])
                    lo += 1
        return out

    def for_track(self, track_id: str) -> Callable[[Sequence[int]], Sequence[int]] | None:
        """``banned(ids)``: the tokens that may not follow ``ids`` in a reply about the track
        (None when the track is not in the catalog). The reply starts where the first call's
        ``ids`` end (what comes before, the prompt and the facts line, is never read as the
        reply): make one per reply."""
        track = self.tracks.get(track_id)
        if track is None:
            return None
        table: dict[tuple[int, ...], set[int]] = {}
        for word in self.false_words(track):
            for seq in self._sequences(word):
                table.setdefault(seq[:-1], set()).add(seq[-1])
        longest = max((len(k) for k in table), default=0)
        words = lyric_words(track.lyrics)
        start: list[int] = []

        def banned(ids: Sequence[int]) -> Sequence[int]:
            if not start:
                start.append(len(ids))
            if words and len(ids) > start[0]:
                quote = _OPEN_LYRIC_QUOTE.search(self.tokenizer.decode(list(ids[start[0]:])))
                keep = self._quote_tokens(quote.group(1), words) if quote else set()
                if keep:  # inside a quoted lyric: only a lyric word, then the closing quote
                    every = np.ones(len(self.tokenizer), dtype=bool)
                    every[list(keep)] = False
                    return np.flatnonzero(every)
            out: set[int] = set(table.get((), ()))
            for n in range(1, min(longest, len(ids)) + 1):
                out |= table.get(tuple(ids[-n:]), set())
            return sorted(out)

        return banned


__all__ = ["ReplyGuard"]
