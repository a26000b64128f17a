"""The embedded music world's style tables: genres, moods and lyric themes.

Plain data, read by the catalog sampler (``world.build``), the text generator (``world.text``) and
the audio synthesiser (``world.audio``). A genre fixes the *distributions* a track is drawn
from (tempo range, moods, instruments, vocal styles, era), and the *arrangement* its audio
is rendered with (drum pattern, how chords and bass are played), so that genres both read
and sound different.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Genre:
    name: str
    subgenres: tuple[str, ...]
    tempo: tuple[float, float]
    """BPM range of the genre's tracks."""
    moods: dict[str, float]
    """Mood -> relative weight."""
    core: tuple[str, ...]
    """Instruments every track of the genre plays (timbres in ``world.audio``)."""
    optional: tuple[str, ...]
    """Instruments a track may add (each with probability 0.4)."""
    vocals: dict[str, float]
    """Vocal style -> weight; "instrumental" means no lyrics."""
    years: tuple[int, int]
    """Range of artists' debut years."""
    drums: str
    """Drum pattern name (``world.audio.DRUMS``), "" for none."""
    comp: str
    """How the harmony instrument plays the chords: sustain, strum, arp, power, skank, comp, block."""
    bass: str
    """Bass line style: walking, root8, offbeat, sub, root, "" for none."""
    progression: str
    """Chord progression family (``world.audio.PROGRESSIONS``)."""
    weight: float = 1.0
    """Share of artists in the genre (relative)."""


GENRES: tuple[Genre, ...] = (
    Genre("classical", ("baroque", "romantic", "chamber music", "minimalism"), (60, 110),
          {"calm": 3, "melancholic": 3, "romantic": 2, "dramatic": 3, "uplifting": 1},
          ("strings",), ("piano", "flute", "cello"), {"instrumental": 1.0}, (1960, 2012),
          "", "sustain", "root", "classical", 0.8),
    Genre("jazz", ("bebop", "cool jazz", "swing", "jazz fusion"), (110, 200),
          {"chill": 3, "romantic": 2, "happy": 2, "melancholic": 2, "energetic": 1},
          ("piano", "upright bass", "drums"), ("saxophone", "trumpet"),
          {"instrumental": 3, "female vocals": 1.5, "male vocals": 1}, (1955, 2010),
          "swing", "comp", "walking", "jazz", 0.9),
    Genre("electronic", ("house", "techno", "trance", "synthwave"), (118, 134),
          {"energetic": 4, "dreamy": 2, "dark": 2, "happy": 2, "uplifting": 2},
          ("drum machine", "synth bass", "synth lead"), ("synth pad", "piano"),
          {"instrumental": 3, "female vocals": 1}, (1988, 2014),
          "four", "arp", "offbeat", "minor_loop", 1.1),
    Genre("rock", ("classic rock", "indie rock", "punk", "alternative"), (100, 160),
          {"energetic": 4, "rebellious": 3, "melancholic": 1, "happy": 2, "dark": 1},
          ("distorted guitar", "bass", "drums"), ("electric guitar", "organ"),
          {"male vocals": 3, "female vocals": 1, "instrumental": 0.2}, (1965, 2012),
          "rock", "power", "root8", "rock", 1.2),
    Genre("folk", ("americana", "singer-songwriter", "celtic", "bluegrass"), (80, 125),
          {"calm": 2, "melancholic": 2, "sad": 2, "romantic": 2, "happy": 2, "nostalgic": 3},
          ("acoustic guitar",), ("flute", "strings", "bass"),
          {"male vocals": 2, "female vocals": 2, "instrumental": 0.4}, (1962, 2012),
          "", "strum", "root", "folk", 0.9),
    Genre("hip-hop", ("boom bap", "trap", "conscious hip-hop", "lo-fi hip-hop"), (78, 98),
          {"energetic": 2, "dark": 3, "rebellious": 3, "chill": 2, "happy": 1},
          ("drum machine", "808", "piano"), ("synth pad", "strings"),
          {"rap": 5, "instrumental": 0.6, "female vocals": 0.4}, (1985, 2014),
          "boombap", "block", "sub", "minor_loop", 1.1),
    Genre("ambient", ("drone", "new age", "dark ambient", "space music"), (55, 80),
          {"calm": 4, "dreamy": 4, "dark": 2, "melancholic": 1},
          ("synth pad",), ("piano", "strings", "flute"), {"instrumental": 1.0}, (1975, 2012),
          "", "sustain", "", "ambient", 0.6),
    Genre("pop", ("dance pop", "synth-pop", "teen pop", "indie pop"), (96, 128),
          {"happy": 4, "romantic": 3, "uplifting": 3, "energetic": 2, "sad": 1},
          ("drums", "piano", "bass"), ("synth pad", "synth lead", "electric guitar"),
          {"female vocals": 3, "male vocals": 2}, (1975, 2014),
          "pop", "block", "root8", "pop", 1.3),
    Genre("metal", ("heavy metal", "thrash metal", "doom metal", "power metal"), (140, 200),
          {"aggressive": 5, "dark": 4, "rebellious": 2, "dramatic": 1},
          ("distorted guitar", "bass", "drums"), ("organ",),
          {"male vocals": 4, "instrumental": 0.3}, (1972, 2012),
          "metal", "power", "root8", "metal", 0.7),
    Genre("reggae", ("roots reggae", "dub", "ska", "dancehall"), (66, 92),
          {"chill": 4, "happy": 3, "uplifting": 2, "rebellious": 1},
          ("electric guitar", "bass", "drums"), ("organ", "trumpet"),
          {"male vocals": 3, "female vocals": 1, "instrumental": 0.5}, (1968, 2012),
          "onedrop", "skank", "root", "reggae", 0.6),
)
GENRE_INDEX = {g.name: i for i, g in enumerate(GENRES)}

# Mood -> (energy in [-1, 1], probability of a minor key, lyric themes with weights).
MOODS: dict[str, tuple[float, float, dict[str, float]]] = {
    "happy": (0.5, 0.15, {"love": 2, "party": 3, "summer": 3, "dreams": 1}),
    "sad": (-0.5, 0.85, {"heartbreak": 4, "loss": 3, "nostalgia": 1}),
    "melancholic": (-0.3, 0.8, {"heartbreak": 2, "loss": 2, "nostalgia": 3, "night": 1}),
    "energetic": (0.8, 0.4, {"party": 3, "road": 2, "rebellion": 1, "night": 2}),
    "calm": (-0.7, 0.4, {"nature": 4, "dreams": 2, "faith": 1}),
    "chill": (-0.4, 0.4, {"summer": 2, "night": 2, "nature": 1, "love": 1}),
    "dark": (0.1, 0.9, {"night": 3, "struggle": 3, "loss": 1}),
    "romantic": (-0.2, 0.35, {"love": 5, "night": 1}),
    "uplifting": (0.4, 0.15, {"faith": 3, "dreams": 3, "road": 1}),
    "dreamy": (-0.5, 0.5, {"dreams": 4, "nature": 1, "night": 1}),
    "rebellious": (0.7, 0.6, {"rebellion": 4, "struggle": 3, "road": 1}),
    "aggressive": (1.0, 0.9, {"rebellion": 3, "struggle": 3, "loss": 1}),
    "nostalgic": (-0.3, 0.5, {"nostalgia": 4, "road": 2, "love": 1}),
    "dramatic": (0.3, 0.7, {"loss": 2, "struggle": 2, "faith": 1}),
}
MOOD_NAMES: tuple[str, ...] = tuple(MOODS)

# Genre-specific lyric theme bias, multiplied into the mood's theme weights.
GENRE_THEMES: dict[str, dict[str, float]] = {
    "hip-hop": {"struggle": 3, "party": 2, "rebellion": 2, "night": 1.5},
    "folk": {"nature": 2.5, "road": 2, "nostalgia": 2},
    "reggae": {"faith": 3, "rebellion": 2, "summer": 2},
    "pop": {"love": 2.5, "party": 2, "summer": 1.5},
    "metal": {"struggle": 2, "rebellion": 2, "loss": 1.5},
    "rock": {"road": 2, "rebellion": 1.5, "night": 1.5},
    "jazz": {"love": 2, "night": 2.5},
    "electronic": {"night": 2, "dreams": 2, "party": 1.5},
}
THEMES: tuple[str, ...] = ("love", "heartbreak", "party", "summer", "dreams", "loss", "nostalgia",
                           "night", "road", "rebellion", "nature", "faith", "struggle")
