"""Reply faithfulness: does a reply say only true things about the track it recommends?

``ClaimChecker`` finds every checkable claim in a reply, using the catalog as the vocabulary of
what can be claimed, and checks it against the recommended track (the first of the ranking):

- a **year** (1950-2029) or a **decade** ("the 90s", "1990s", "'90s", "90's") must match the track's
  release year;
- a **key** (a note and a mode: "G# minor", "D major", "E flat major") must be the track's key, in
  any spelling of the same pitch class and mode ("B# minor" is C minor); any key is false of a
  track without one (a note without a mode, "in G#", is not counted);
- a **tempo** ("around 64 BPM") must be within ``BPM_TOLERANCE`` of the track's tempo (false of a
  track without one);
- a **tag or genre word** of the catalog's vocabulary (any track's tags or pseudo tags, as
  whole words) must be one of the track's own tags; a tag word that opens a sentence and is
  followed by "to" speaks of the speaker, not the track ("Happy to change it up"), and is not
  a claim;
- **quoted lyrics** (a quotation in a sentence that mentions lyrics: the lyrics keep coming back
  to "dance") must occur in the track's lyrics, as whole words;
- an **artist**, **title** or **album** of another catalog track named in the reply is false
  unless it is this track's own. Names of two or more words (one a content word) match in any
  case; one-word names only as written, capitalised and not opening a sentence (real catalogs
  have tracks called "Here" or "Home", which plain replies say all the time).

Text naming the track itself (its title, artists, album) is removed before anything else is
matched: it is true, "Blue Hour" claims no tag "blue", and an artist's name that is also
another track's album title is the artist. Era tags ("90s") are checked as decades, against
the release year. What cannot be checked against the catalog
(adjectives outside its vocabulary, opinions) is not counted either way.

``reply_report`` runs a recommender with replies on evaluation turns and summarises: the share
of replies with no false claim, the share that name the track (its title), the mean length in
words, and a few examples with their false claims.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from talkplay.data.conversations.phrases import STOPWORDS
from talkplay.data.schema import Track
from talkplay.lm.facts import KEY_CLAIM, claim_tags, decade_forms, key_true, true_tags

_YEAR = re.compile(r"\b(19[5-9]\d|20[0-2]\d)\b")  # lm.facts.YEARS
_DECADE = re.compile(r"(?:\b|')(\d{2}|\d{4})'?s\b")
_BPM = re.compile(r"\b(\d{2,3}) ?bpm\b", re.IGNORECASE)
BPM_TOLERANCE = 2.0
"""A tempo claim ("around 64 BPM") is true within this many BPM of the track's tempo."""
_LYRIC_QUOTE = re.compile(r"\blyric[^.!?]*?[\"\u201c]([^\"\u201d]+)[\"\u201d]", re.IGNORECASE)
MIN_NAME = 4
"""One-word names shorter than this (characters) are not matched."""


@dataclass
class ReplyCheck:
    """The verdict on one reply."""

    false_claims: list[str] = field(default_factory=list)
    """Each false claim as "kind: text" (e.g. "decade: 80s", "tag: rock", "artist: Nirvana")."""
    claims: int = 0
    """Checkable claims found (true and false)."""
    names_track: bool = False
    """The reply contains the track's title."""
    words: int = 0


def _words(name: str) -> list[str]:
    return re.findall(r"[\w']+", name.lower())


def _is_multi(name: str) -> bool:
    """A name of two or more words, one of them a content word: matched in any case."""
    words = _words(name)
    return len(words) >= 2 and any(w not in STOPWORDS and len(w) >= 3 for w in words)


def _is_single(name: str) -> bool:
    """A one-word name ("Adele", "Nevermind"): matched only as written, capitalised, and not
    as the first word of a sentence, where any word is capitalised ("Here is ...")."""
    words = _words(name)
    return len(words) == 1 and len(words[0]) >= MIN_NAME and words[0] not in STOPWORDS \
        and name[:1].isupper()


def _pattern(names: Iterable[str], flags: int = 0) -> re.Pattern | None:
    """One regex matching any of ``names`` as whole words, longest first."""
    ordered = sorted(set(names), key=len, reverse=True)
    if not ordered:
        return None
    return re.compile(r"(?<![\w])(" + "|".join(re.escape(p) for p in ordered) + r")(?![\w])", flags)


def _sentence_start(text: str, at: int) -> bool:
    before = text[:at].rstrip()
    return not before or before[-1] in ".!?:;\"'(-"


class ClaimChecker:
    """Checks replies against the tracks they recommend, with a catalog's vocabulary."""

    def __init__(self, tracks: Iterable[Track]):
        tracks = list(tracks)
        self.tags = _pattern(claim_tags(tracks), re.IGNORECASE)
        names = {"artist": {a for tr in tracks for a in tr.artists},
                 "title": {tr.title for tr in tracks if tr.title},
                 "album": {tr.album for tr in tracks if tr.album}}
        self.names = {kind: (_pattern({n.lower() for n in ns if _is_multi(n)}, re.IGNORECASE),
                             _pattern({n for n in ns if _is_single(n)}))
                      for kind, ns in names.items()}

    def check(self, reply: str, track: Track) -> ReplyCheck:
        """All checkable claims of ``reply`` about ``track``."""
        text = " ".join(reply.split())
        out = ReplyCheck(words=len(text.split()))
        title = track.title or ""
        out.names_track = bool(title) and re.search(
            r"(?<![\w])" + re.escape(title) + r"(?![\w])", text, re.IGNORECASE) is not None
        own = [*track.artists, title, track.album or ""]
        rest = text
        for name in sorted((n for n in own if n), key=len, reverse=True):
            # The track's own names are true and claim nothing else (an artist's name may also
            # be another track's album; "Blue Hour" claims no tag "blue").
            pattern = r"(?<![\w])" + re.escape(name) + r"(?![\w])"
            out.claims += len(re.findall(pattern, rest, re.IGNORECASE))
            rest = re.sub(pattern, " | ", rest, flags=re.IGNORECASE)
        for kind, (multi, single) in self.names.items():
            for pattern in (multi, single):
                for m in pattern.finditer(rest) if pattern is not None else ():
                    if pattern is single and _sentence_start(rest, m.start()):
                        continue
                    out.claims += 1
                    out.false_claims.append(f"{kind}: {m.group(1).lower()}")
        lyrics = " ".join(_words(track.lyrics or ""))
        for m in _LYRIC_QUOTE.finditer(rest):
            said = " ".join(_words(m.group(1)))
            out.claims += 1
            if not said or f" {said} " not in f" {lyrics} ":
                out.false_claims.append(f"lyric: {said}")
        rest = _LYRIC_QUOTE.sub(lambda m: m.group(0)[:m.start(1) - m.start(0)] + " | ", rest)
        for m in KEY_CLAIM.finditer(rest):
            out.claims += 1
            if key_true(m.group(0), track.key) is False:
                out.false_claims.append(f"key: {m.group(0)}")
        for m in _BPM.finditer(rest):
            out.claims += 1
            if not track.tempo or abs(int(m.group(1)) - track.tempo) > BPM_TOLERANCE:
                out.false_claims.append(f"tempo: {m.group(1)} BPM")
        year = track.year
        for m in _YEAR.finditer(rest):
            out.claims += 1
            if year != int(m.group(1)):
                out.false_claims.append(f"year: {m.group(1)}")
        forms = decade_forms(year)
        for m in _DECADE.finditer(rest):
            said = m.group(1) + "s"
            out.claims += 1
            if said not in forms:
                out.false_claims.append(f"decade: {said}")
        if self.tags is not None:
            mine = true_tags(track)
            for m in self.tags.finditer(rest):
                said = m.group(1).lower()
                if _DECADE.fullmatch(said) or _YEAR.fullmatch(said):
                    continue  # an era tag ("90s") is a decade claim, checked against the year
                if _sentence_start(rest, m.start()) and re.match(r"\s+to\b", rest[m.end():]):
                    continue  # "Happy to help": the speaker's mood, not the track's
                out.claims += 1
                if said not in mine:
                    out.false_claims.append(f"tag: {said}")
        return out


def reply_report(system, targets: list, tracks: dict[str, Track], checker: ClaimChecker,
                 examples: int = 3) -> dict:
    """Replies of ``system`` on ``targets``, checked against each turn's first track.

    Args:
        system: a recommender that writes replies (``Recommendation.reply``).
        targets: ``evaluate.protocols.Target`` list (their histories are the turns).
        tracks: the catalog, id -> track.
        checker: the catalog's ``ClaimChecker``.
        examples: replies kept verbatim in the report (the first ones with a false claim, then
            the first ones).
    Returns:
        ``{"replies", "no_false_claim", "names_track", "mean_words", "claims_per_reply",
        "false_by_kind", "examples", "turns"}`` (``turns``: every reply with its verdict).
    """
    checks, kept, bad, rows = [], [], [], []
    for t in targets:
        rec = system.recommend(t.history, k=1, exclude=set(t.exclude))
        if not rec.tracks or rec.tracks[0].track_id not in tracks:
            continue
        track = tracks[rec.tracks[0].track_id]
        c = checker.check(rec.reply, track)
        checks.append(c)
        row = {"request": next((m.content for m in reversed(t.history) if m.role == "user"), ""),
               "track_id": track.id, "track": f"{track.title} by {track.artist}",
               "reply": rec.reply, **asdict(c)}
        rows.append(row)
        (bad if c.false_claims else kept).append(row)
    n = len(checks)
    kinds: dict[str, int] = {}
    for c in checks:
        for claim in c.false_claims:
            kind = claim.split(":", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
    return {"replies": n,
            "no_false_claim": sum(not c.false_claims for c in checks) / max(n, 1),
            "names_track": sum(c.names_track for c in checks) / max(n, 1),
            "mean_words": sum(c.words for c in checks) / max(n, 1),
            "claims_per_reply": sum(c.claims for c in checks) / max(n, 1),
            "false_by_kind": kinds, "examples": (bad[:examples] + kept)[:examples],
            "turns": rows}
