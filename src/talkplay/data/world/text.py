"""Text of the embedded music world: artist, title and album names, tags, lyrics, playlist names.

Every function draws from the ``numpy.random.Generator`` it is given, so the world stays
deterministic per seed. Names are invented from syllables and word lists; how a name is
built depends a little on the genre (jazz trios, "The ..." rock bands, classical opus
numbers), as in real catalogs, but never on the hidden listener scene.
"""

from __future__ import annotations

import numpy as np

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "ch",
           "dr", "gr", "kr", "sh", "st", "tr", "th", "j", "h", "w")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "y", "io")
_CODAS = ("", "", "", "n", "r", "l", "s", "x", "nd", "th", "m", "k")
FIRST = ("Ada", "Ben", "Cleo", "Dara", "Eli", "Frida", "Gus", "Hana", "Ivo", "June", "Kai",
         "Lena", "Milo", "Nora", "Otis", "Pia", "Quinn", "Rosa", "Sami", "Tove", "Ula", "Vera",
         "Wes", "Yara", "Zeke", "Mabel", "Arlo", "Ines", "Jonah", "Lucia", "Nico", "Odette")
NOUNS = ("river", "fire", "glass", "moon", "wolf", "garden", "mirror", "ocean", "city", "storm",
         "shadow", "light", "heart", "road", "sky", "stone", "rain", "dream", "ghost", "island",
         "wire", "velvet", "echo", "desert", "signal", "harbor", "lantern", "machine", "crown",
         "feather", "engine", "orchard", "comet", "tide", "canyon", "ember", "violet", "neon")
ADJS = ("golden", "broken", "silent", "electric", "blue", "wild", "hollow", "bright", "lonely",
        "crimson", "distant", "sweet", "frozen", "burning", "quiet", "endless", "paper", "midnight",
        "silver", "restless", "gentle", "strange", "faded", "heavy", "tender", "lucky")
_PLACES = ("Blue Note", "Harbor Hall", "the Palace", "Red Rocks", "the Lantern Club", "Studio 9")
_KEYS = ("C", "D", "E flat", "E", "F", "G", "A flat", "A", "B flat", "B")
_FORMS = ("Sonata", "Nocturne", "Concerto", "Prelude", "Etude", "Suite", "Fantasia", "Serenade")
_MOVEMENTS = ("I. Allegro", "II. Adagio", "III. Scherzo", "I. Andante", "II. Largo", "IV. Presto")

# Words per lyric theme: nouns, verbs, adjectives. Lines are filled from these.
THEME_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "love": (("heart", "kiss", "arms", "eyes", "darling", "rose"),
             ("hold", "love", "want", "need", "touch"), ("sweet", "warm", "tender", "true")),
    "heartbreak": (("tears", "goodbye", "letter", "empty room", "ring", "heart"),
                   ("cry", "leave", "forget", "lose", "break"), ("cold", "broken", "empty", "alone")),
    "party": (("dance floor", "lights", "weekend", "crowd", "drinks", "beat"),
              ("dance", "jump", "move", "shout", "spin"), ("loud", "wild", "crazy", "alive")),
    "summer": (("sun", "beach", "waves", "sand", "sky", "July"),
               ("shine", "swim", "ride", "play", "glow"), ("golden", "warm", "bright", "easy")),
    "dreams": (("stars", "clouds", "wings", "sky", "dream", "moon"),
               ("fly", "float", "wish", "wake", "drift"), ("endless", "silver", "soft", "high")),
    "loss": (("grave", "memory", "ashes", "winter", "candle", "name"),
             ("mourn", "fade", "remember", "bury", "miss"), ("gone", "grey", "silent", "lost")),
    "nostalgia": (("old photographs", "hometown", "yesterday", "school yard", "radio", "summer"),
                  ("remember", "return", "wonder", "recall", "dream"), ("old", "faded", "young", "golden")),
    "night": (("streetlights", "midnight", "city", "neon", "shadows", "moon"),
              ("wander", "hide", "burn", "call", "drive"), ("dark", "electric", "late", "restless")),
    "road": (("highway", "engine", "miles", "horizon", "map", "train"),
             ("drive", "run", "roll", "leave", "chase"), ("open", "dusty", "long", "free")),
    "rebellion": (("system", "walls", "chains", "streets", "flag", "fist"),
                  ("fight", "break", "rise", "burn", "scream"), ("angry", "free", "loud", "wild")),
    "nature": (("river", "forest", "mountain", "rain", "meadow", "birds"),
               ("grow", "flow", "breathe", "rest", "bloom"), ("green", "quiet", "gentle", "clear")),
    "faith": (("light", "prayer", "mountain", "morning", "spirit", "hope"),
              ("believe", "rise", "pray", "shine", "carry"), ("holy", "strong", "bright", "new")),
    "struggle": (("block", "rent", "concrete", "hustle", "pressure", "streets"),
                 ("grind", "survive", "push", "climb", "fight"), ("hard", "cold", "real", "heavy")),
}
_LINES = (
    "I {v} the {n} tonight", "{a} {n}, don't let me go", "we {v} like the {n} is {a}",
    "every {n} I {v} is {a}", "you and me and the {a} {n}", "oh the {n}, the {n2}",
    "I {v} and I {v2} till the {n} is gone", "under the {a} {n} we {v}", "{v} with me, {a} {n}",
    "there's a {n} in my {n2}", "can't {v} the {a} {n2}", "the {n} will {v} again",
)


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "sh", "ch")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _pick(rng: np.random.Generator, seq) -> str:
    return seq[int(rng.integers(len(seq)))]


def invented_word(rng: np.random.Generator, syllables: int | None = None) -> str:
    """A pronounceable invented word ("Kalumo"), 1-3 syllables."""
    n = syllables or int(rng.integers(1, 4))
    word = "".join(_pick(rng, _ONSETS) + _pick(rng, _VOWELS) for _ in range(n)) + _pick(rng, _CODAS)
    return word.capitalize()


def artist_name(rng: np.random.Generator, genre: str) -> str:
    """An artist or band name in a style that suits ``genre``."""
    r = rng.random()
    person = f"{_pick(rng, FIRST)} {invented_word(rng, 2)}"
    if genre == "classical":
        return person if r < 0.5 else f"The {invented_word(rng, 2)} {_pick(rng, ('Quartet', 'Ensemble', 'Consort'))}"
    if genre == "jazz":
        return person if r < 0.5 else f"{person} {_pick(rng, ('Trio', 'Quartet', 'Quintet'))}"
    if genre == "hip-hop":
        return f"{_pick(rng, ('Lil', 'MC', 'Young', 'Big', 'DJ'))} {invented_word(rng)}" if r < 0.7 else person
    if genre == "electronic":
        return invented_word(rng, 3) if r < 0.6 else f"{_pick(rng, ADJS).capitalize()} {invented_word(rng)}"
    if genre in ("rock", "metal"):
        return f"The {_pick(rng, ADJS).capitalize()} {_plural(_pick(rng, NOUNS)).capitalize()}" if r < 0.6 else invented_word(rng, 2)
    if genre == "folk" and r < 0.3:
        return f"{person} & the {_plural(_pick(rng, NOUNS)).capitalize()}"
    return person if r < 0.6 else invented_word(rng, 2)


def title(rng: np.random.Generator, genre: str, theme: str | None) -> str:
    """A track title; half the time it borrows a word of the lyric theme."""
    if genre == "classical":
        opus = f"{_pick(rng, _FORMS)} No. {int(rng.integers(1, 25))} in {_pick(rng, _KEYS)}"
        return opus if rng.random() < 0.5 else f"{opus}: {_pick(rng, _MOVEMENTS)}"
    noun = _pick(rng, THEME_WORDS[theme][0]) if theme and rng.random() < 0.5 else _pick(rng, NOUNS)
    form = int(rng.integers(5))
    if form == 0:
        text = f"{_pick(rng, ADJS)} {noun}"
    elif form == 1:
        text = f"{noun} of {_pick(rng, NOUNS)}"
    elif form == 2:
        text = f"the {noun}"
    elif form == 3:
        text = f"{invented_word(rng)} {noun}"
    else:
        text = f"{_pick(rng, ADJS)} {_pick(rng, NOUNS)}"
    return text.title()


def album_name(rng: np.random.Generator, artist: str, genre: str) -> str:
    """An album title (sometimes self-titled or a live record)."""
    r = rng.random()
    if r < 0.1:
        return artist
    if r < 0.18:
        return f"Live at {_pick(rng, _PLACES)}"
    if genre == "classical" and r < 0.5:
        return f"{_pick(rng, _FORMS)}s and {_pick(rng, _FORMS)}s"
    return f"{_pick(rng, ADJS)} {_plural(_pick(rng, NOUNS))}".title() if r < 0.6 else invented_word(rng, 2)


def lyrics(rng: np.random.Generator, theme: str, n_lines: int = 4) -> str:
    """A few lines of lyrics on ``theme``; the vocabulary is what carries the theme."""
    nouns, verbs, adjs = THEME_WORDS[theme]
    lines = []
    for _ in range(n_lines):
        line = _pick(rng, _LINES).format(n=_pick(rng, nouns), n2=_pick(rng, nouns), v=_pick(rng, verbs),
                                         v2=_pick(rng, verbs), a=_pick(rng, adjs))
        lines.append(line[0].upper() + line[1:])
    return "\n".join(lines)


def tags(rng: np.random.Generator, true_tags: list[str], pop_quantile: float, p_untagged: float,
         p_noise: float, moods: tuple[str, ...]) -> list[str]:
    """Catalog tags: each true tag kept with a probability rising with popularity, plus noise.

    Args:
        rng: generator.
        true_tags: every tag that describes the track (genre, sub-genre, mood, instruments, ...).
        pop_quantile: the track's popularity quantile in [0, 1]; tail tracks keep fewer tags.
        p_untagged: probability of no tags at all.
        p_noise: probability of one extra, random mood tag (possibly wrong).
        moods: the mood vocabulary the noise tag is drawn from.
    Returns:
        Tags, without duplicates, in the order of ``true_tags``.
    """
    if rng.random() < p_untagged:
        return []
    keep = 0.35 + 0.55 * pop_quantile
    out = [t for t in true_tags if rng.random() < keep]
    if rng.random() < p_noise:
        out.append(_pick(rng, moods))
    return list(dict.fromkeys(out))


def decade_tag(year: int) -> str:
    """"1987" -> "80s"; 2000s and 2010s are written in full."""
    d = year // 10 * 10
    return f"{d}s" if d >= 2000 else f"{d % 100:02d}s"


_GENERIC = ("my mix", "favorites", "on repeat", "road trip", "late night", "discoveries",
            "saturday", "for the commute", "kitchen", "throwbacks", "new finds", "car songs",
            "study", "gym", "rainy day", "sunday morning", "liked songs", "summer", "chill")


def playlist_name(rng: np.random.Generator, mood: str | None, genre: str | None, year: int) -> str:
    """A playlist name from its theme (mood or genre) or a generic one; never the scene."""
    if mood is not None and rng.random() < 0.8:
        return _pick(rng, (f"{mood} vibes", f"{mood} mood", f"{mood} songs", f"feeling {mood}",
                           f"{mood} {_pick(rng, _GENERIC)}"))
    if genre is not None and rng.random() < 0.8:
        return _pick(rng, (f"{genre}", f"{genre} essentials", f"best of {genre}",
                           f"{genre} {_pick(rng, _GENERIC)}", f"{genre} {year}"))
    name = _pick(rng, _GENERIC)
    return f"{name} {year}" if rng.random() < 0.3 else name
