"""Reply guard: while a reply is written, the catalog's claim words that are false of the track
it is about cannot be generated.

A reply can state checkable facts about its track: a tag or genre word of the catalog's
vocabulary, a decade, a year (``lm.facts.claim_tags`` / ``true_tags`` / ``decade_forms`` say
which; ``evaluate.replies.ClaimChecker`` checks replies with the same definitions). The guard
bans every such word that is *false* for the chosen track (as a word after a space,
capitalised after a space, and capitalised at the start of a line or after a non-word
character) by its text, not by one tokenization of it: a token may not complete a false word,
however the tokens before it split the word ("female vocal" written " female" + " voc" + "al" is
banned at "al" as it is at " vocal"), unless the word goes on in the same token (" Rocks" is not
the tag "rock"). A phrase of several words is banned from the first token of its last word as
the tokenizer writes it (" voc" after "male" for "male vocals"), so the model cannot swerve into
a misspelling of a false word it has half written ("male vocale"), unless that text still leads
to a true phrase of the track. True words, the track's own names and everything outside the
catalog's vocabulary stay free.

Keys are checked (``lm.facts.key_true``) but not guarded: the facts line does not show the
track's key, so a model that names one guesses, and banning the wrong mode word after a guessed
note only moves the guess into other spellings ("G## major", "G###8 minor" on the quickstart
run, which the checker cannot read as keys any more).

Lyrics are guarded the other way round, because any word can be a lyric: once a reply opens a
quotation in a sentence about lyrics ('the lyrics keep coming back to "'), only the words of
the facts line's "lyrics:" part (``describe.lyric_words``: words of the track's own lyrics) and
then the closing quote can be written; a track without lyric words cannot be said to have
lyrics at all ("lyric" and "lyrics" are banned words for it).

It is a decoding constraint, not a property of the model: ``GenerateConfig.reply_guard`` (on by
default, ``talkplay evaluate --no-reply-guard`` measures the model alone). Its side effects: a
banned word also bans the longer words that a token ending exactly where it ends would start
("pop" and "popular" when "popular" is split as " pop" + "ular"), and a phrase's last word bans
other words that begin with the same first token after the same words ("male vocation"); a
false word still slips through inside a token that starts with another character ('"Rock') or
when the reply writes it otherwise (another case, a misspelling before its last word), and so
does the first year of the track's own decade (1990 for a 1994 track: its text begins "1990s",
which is true).
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
_WORD = re.compile(r"\w")


def _variants(phrase: str) -> list[str]:
    cap = phrase[:1].upper() + phrase[1:]
    forms = [" " + phrase, " " + cap, cap]
    if phrase in DECADES:  # "the 80's" is the same claim as "the 80s"
        forms += [" " + phrase[:-1] + "'s", phrase[:-1] + "'s"]
    return forms


class ReplyGuard:
    """Banned tokens per track, over one catalog and one tokenizer.

    Args:
        tokenizer: the run's tokenizer.
        tracks: the catalog (its tags make the vocabulary of claims).
    """

    def __init__(self, tokenizer, tracks: Iterable[Track]):
        self.tracks = {t.id: t for t in tracks}
        self.tokenizer = tokenizer
        self.tags = sorted(claim_tags(self.tracks.values()))
        self._texts: list[str] | None = None
        self._sorted: tuple[list[str], list[int]] | None = None
        self._prefixes: dict[str, list[tuple[str, str]]] | None = None
        self._longest = 0
        self._next: dict[tuple[str, int], tuple[set[int], list[tuple[str, int]]]] = {}

    def false_words(self, track: Track) -> list[str]:
        """The claim words that are false of ``track``: catalog tags it lacks, other decades,
        other years (every decade and year when its year is unknown), and "lyric(s)" when it
        has no lyric words. The year that starts the track's own decade stays free: its text
        begins the decade ("1990" of "1990s")."""
        mine = true_tags(track)
        decades = decade_forms(track.year)
        return ([t for t in self.tags if t not in mine]
                + [d for d in DECADES if d not in decades]
                + [str(y) for y in YEARS if y != track.year and f"{y}s" not in decades]
                + ([] if lyric_words(track.lyrics) else ["lyrics", "lyric"]))

    def _true_forms(self, track: Track) -> list[str]:
        """How the claims true of ``track`` can be written (``_variants``)."""
        words = [*true_tags(track), *decade_forms(track.year)]
        if track.year:
            words.append(str(track.year))
        return [v for w in words for v in _variants(w)]

    def _token_texts(self) -> list[str]:
        """Every token's text, by id."""
        if self._texts is None:
            self._texts = [self.tokenizer.decode([i]) for i in range(len(self.tokenizer))]
        return self._texts

    def _strings(self) -> tuple[list[str], list[int]]:
        """Every token's text, sorted, with its id."""
        if self._sorted is None:
            texts = self._token_texts()
            order = sorted(range(len(texts)), key=texts.__getitem__)
            self._sorted = ([texts[i] for i in order], order)
        return self._sorted

    def _starting(self, prefix: str) -> list[tuple[str, int]]:
        """(text, id) of every token whose text starts with ``prefix``."""
        texts, ids = self._strings()
        out = []
        lo = bisect.bisect_left(texts, prefix)
        while lo < len(texts) and texts[lo].startswith(prefix):
            out.append((texts[lo], ids[lo]))
            lo += 1
        return out

    def _commit(self, form: str) -> int:
        """Where the last word of a phrase of several words is entered: the end of the token
        that starts it, as the tokenizer writes the phrase (0: a single word, or a last word
        of one token, which is banned only once complete)."""
        if " " not in form.strip():
            return 0
        last = form.rstrip().rfind(" ") + 1
        texts = self._token_texts()
        at = 0
        for t in self.tokenizer(form, add_special_tokens=False)["input_ids"]:
            at += len(texts[t]) if t < len(texts) else 0
            if at > last:
                return at if at < len(form) else 0
        return 0

    def _index(self) -> dict[str, list[tuple[str, str]]]:
        """Every proper prefix (the empty one too) of every written form (``_variants``) of
        every claim word -> [(form, word)]."""
        if self._prefixes is None:
            words = [*self.tags, *DECADES, *(str(y) for y in YEARS), "lyrics", "lyric"]
            index: dict[str, list[tuple[str, str]]] = {}
            for word in words:
                for form in dict.fromkeys(_variants(word)):
                    for k in range(len(form)):
                        index.setdefault(form[:k], []).append((form, word))
            self._prefixes = index
            self._longest = max(map(len, index))
        return self._prefixes

    def _after(self, form: str, k: int) -> tuple[set[int], list[tuple[str, int]]]:
        """With ``form[:k]`` written: the tokens that complete ``form`` as a word, and the
        tokens (text, id) that enter its last word without completing it."""
        key = (form, k)
        if key not in self._next:
            rest = form[k:]
            done = {i for t, i in self._starting(rest)
                    if len(t) == len(rest) or not _WORD.match(t[len(rest)])}
            commit = self._commit(form)
            enter = [(t, i) for t, i in self._starting(form[k:commit])
                     if i not in done] if k < commit else []
            self._next[key] = (done, enter)
        return self._next[key]

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
        (None when the track is not in the catalog). A false word is matched in the text of
        the last tokens of ``ids``; a quoted lyric only in the reply, which starts where the
        first call's ``ids`` end (what comes before, the prompt and the facts line, is never
        read as the reply): make one per reply."""
        track = self.tracks.get(track_id)
        if track is None:
            return None
        false = set(self.false_words(track))
        true = self._true_forms(track)
        index, texts = self._index(), self._token_texts()
        longest = self._longest

        def leads_true(text: str) -> bool:  # on the way to a true claim, or one just written
            return any(t.startswith(text) or (text.startswith(t) and not _WORD.match(text[len(t)]))
                       for t in true)

        fresh: set[int] = set()  # completing a false word from nothing (after a space)
        fresh_bare: set[int] = set()  # ... the forms without a space (after a non-word character)
        for form, word in index[""]:
            if word in false:
                done, enter = self._after(form, 0)
                (fresh if form.startswith(" ") else fresh_bare).update(
                    done, (i for t, i in enter if not leads_true(t)))
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
            text = "".join(texts[i] if 0 <= i < len(texts) else "" for i in ids[-longest - 2:])
            out = set(fresh)
            if not text or not _WORD.match(text[-1]):
                out |= fresh_bare
            for k in range(1, min(longest, len(text)) + 1):
                for form, word in index.get(text[-k:], ()):
                    if word not in false:
                        continue
                    if not form.startswith(" ") and k < len(text) and _WORD.match(text[-k - 1]):
                        continue  # inside another word
                    done, enter = self._after(form, k)
                    out |= done
                    out.update(i for t, i in enter if not leads_true(form[:k] + t))
            return sorted(out)

        return banned


__all__ = ["ReplyGuard"]
