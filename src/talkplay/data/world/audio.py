"""Audio of the embedded music world: a short arrangement per track, synthesised with numpy.

A clip is drums (a pattern per genre at the track's tempo: four-on-the-floor for electronic,
a swung ride for jazz, boom-bap for hip-hop, a one-drop for reggae, double kicks for metal),
a bass line and chords in the track's key and mode (walking bass, power chords, strums,
arpeggios, off-beat skanks, sustained strings and pads), and a lead: a formant voice, sung or
rapped, or a lead instrument. Genres with a hall get a noise-tail reverb. Timbres live in
``world.timbre``. All randomness comes from the track's own seed, so clips can be rendered in
any order and in parallel.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import fftconvolve

from talkplay.data.world.genres import GENRE_INDEX, GENRES, Genre
from talkplay.data.world.timbre import add, drum, hz, lowpass, sing, voice

PROGRESSIONS = {"pop": (0, 4, 5, 3), "rock": (0, 3, 4, 3), "metal": (0, 5, 6, 0),
                "folk": (0, 3, 0, 4), "jazz": (1, 4, 0, 0), "classical": (0, 5, 3, 4),
                "ambient": (0, 3), "minor_loop": (0, 5, 2, 6), "reggae": (0, 3)}
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
# Drum patterns on a 16-step bar: part -> steps.
DRUMS = {
    "rock": {"kick": (0, 8, 10), "snare": (4, 12), "hat": tuple(range(0, 16, 2))},
    "four": {"kick": (0, 4, 8, 12), "snare": (4, 12), "open": (2, 6, 10, 14), "hat": tuple(range(16))},
    "swing": {"ride": (0, 4, 6, 8, 12, 14), "pedal": (4, 12), "kick": (0,)},
    "boombap": {"kick": (0, 7, 10), "snare": (4, 12), "hat": tuple(range(0, 16, 2))},
    "onedrop": {"kick": (8,), "snare": (8,), "hat": tuple(range(0, 16, 2))},
    "pop": {"kick": (0, 6, 8), "snare": (4, 12), "hat": tuple(range(0, 16, 2))},
    "metal": {"kick": tuple(range(16)), "snare": (4, 12), "ride": tuple(range(0, 16, 2))},
}
SWING = {"swing": 0.33, "boombap": 0.2, "onedrop": 0.25}
HARMONY = ("distorted guitar", "acoustic guitar", "electric guitar", "piano", "strings", "synth pad",
           "synth lead")
"""Instruments that can play the chords, in order of preference."""
REVERB = {"classical": 1.6, "ambient": 2.5, "jazz": 0.6, "folk": 0.5}


@dataclass
class _Clip:
    """A clip being rendered: its grid, key and the four stems (each [n] float)."""

    sr: int
    n: int
    step: int
    """One 16th note in samples."""
    swing: float
    scale: tuple[int, ...]
    root: int
    rng: np.random.Generator
    stems: dict[str, np.ndarray] = field(default_factory=dict)
    cache: dict[tuple, np.ndarray] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return self.n // self.step + 1

    def pos(self, s: int) -> int:
        """Sample index of 16th step ``s``; swung off-beat 8ths land late."""
        return s * self.step + (int(self.swing * 2 * self.step) if s % 4 == 2 else 0)

    def note(self, degree: int, octave: int = 0) -> int:
        """MIDI number of a scale degree (0 = tonic) above the clip's root."""
        return self.root + 12 * (octave + degree // 7) + self.scale[degree % 7]

    def play(self, stem: str, instrument: str, midi: int, at: int, length: int, gain: float) -> None:
        if at >= self.n:
            return
        # Notes ring at most 2 s and stop at the clip end (sustained chords would overrun it).
        length = min(length, 2 * self.sr, self.n - self.step * (at // self.step))
        key = (instrument, midi, length)
        if key not in self.cache:
            self.cache[key] = voice(instrument, hz(midi), length, self.sr, self.rng)
        add(self.stems[stem], self.cache[key], at, gain)


def _drums(c: _Clip, g: Genre, inst: list[str]) -> None:
    kit = "drum machine" if "drum machine" in inst else "drums"
    for part, steps in DRUMS[g.drums].items():
        hit = drum(part, kit, c.sr, c.rng)
        for s in range(c.n_steps):
            if s % 16 in steps:
                vel = 0.6 + 0.4 * c.rng.random() if part in ("hat", "ride") else 1.0
                add(c.stems["drums"], hit, c.pos(s), vel)


def _harmony(c: _Clip, g: Genre, inst: list[str]) -> str:
    """Chords (comping style per genre) and the bass line; returns the harmony instrument."""
    chord_len = {"jazz": 8, "classical": 8, "ambient": 32}.get(g.name, 16)  # in 16ths
    prog = PROGRESSIONS[g.progression]
    harmony = next((i for i in inst if i in HARMONY), "piano")
    bass = next((i for i in inst if i in ("upright bass", "bass", "synth bass", "808", "cello")), harmony)
    for start in range(0, c.n_steps, chord_len):
        deg = prog[(start // chord_len) % len(prog)]
        tones = [c.note(deg + i, 1) for i in ((0, 2, 4, 6) if g.name == "jazz" else (0, 2, 4))]
        if g.comp == "sustain":
            for m in tones:
                c.play("chords", harmony, m, c.pos(start), (chord_len + 1) * c.step, 0.5)
        elif g.comp == "power":
            sub = 1 if g.name == "metal" else 2
            for s in range(start, start + chord_len, sub):
                c.play("chords", harmony, tones[0] - 12, c.pos(s), c.step * sub, 0.8)
        else:
            if g.comp == "comp":  # jazz comping: syncopated stabs, some skipped
                hits = [s for s in (0, 3, 6) if c.rng.random() < 0.7]
            else:
                hits = {"strum": range(0, chord_len, 2), "arp": range(chord_len),
                        "skank": range(4, chord_len, 8), "block": range(0, chord_len, 4)}[g.comp]
            for s in hits:
                notes = [tones[s % len(tones)] + 12 * (s // 4 % 2)] if g.comp == "arp" else tones
                dur = c.step * (1 if g.comp in ("skank", "arp") else 4)
                for j, m in enumerate(notes):
                    strum = j * int(0.012 * c.sr) if g.comp == "strum" else 0  # strings hit in turn
                    c.play("chords", harmony, m, c.pos(start + s) + strum, dur, 0.5)
        steps = {"walking": range(0, chord_len, 4), "root8": range(0, chord_len, 2),
                 "offbeat": range(2, chord_len, 4), "sub": (0, 6), "root": range(0, chord_len, 8)}.get(g.bass, ())
        for s in steps:
            walk = c.scale[int(c.rng.integers(1, 5))] if g.bass == "walking" and s else 0
            c.play("bass", bass, c.note(deg) - 12 + walk, c.pos(start + s),
                   c.step * (8 if g.bass in ("sub", "root") else 4), 1.0)
    return harmony


def _lead(c: _Clip, g: Genre, inst: list[str], vocal: str, harmony: str) -> None:
    """A melody by random walk on the scale: sung, rapped, or played by a lead instrument."""
    if vocal != "instrumental":
        rhythm = 1 if vocal == "rap" else 2 if g.name in ("jazz", "metal", "rock") else 4
        octave = 1 if "female" in vocal else 0
        notes, s, d = [], int(c.rng.integers(0, 4)), int(c.rng.integers(0, 5))
        while s < c.n_steps:
            d = int(np.clip(d + c.rng.integers(-2, 3), 0, 9))
            length = rhythm * int(c.rng.choice([1, 1, 2]))
            notes.append((c.pos(s), c.note(d, octave), length * c.step))
            s += length
        sing(c.stems["lead"], notes, c.sr, c.rng, vocal == "rap", "female" in vocal)
        return
    lead = next((i for i in inst if i in ("saxophone", "trumpet", "flute", "cello") and i != harmony), None)
    s, d = 0, 4
    while lead and s < c.n_steps:
        d = int(np.clip(d + c.rng.integers(-2, 3), 0, 11))
        length = 2 * int(c.rng.choice([1, 1, 2, 4]))
        c.play("lead", lead, c.note(d, 1), c.pos(s), length * c.step, 0.6)
        s += length


def _master(c: _Clip, g: Genre) -> np.ndarray:
    """Balance the stems, add the room, soft-clip and normalise: float32 [n]."""
    gains = {"drums": 1.0, "bass": 0.8, "chords": 0.7, "lead": 0.8}
    mix = sum(gains[k] * v / (np.sqrt(np.mean(v ** 2)) + 1e-6) for k, v in c.stems.items() if v.any())
    if g.name in REVERB:
        ir_n = int(REVERB[g.name] * c.sr / 2)
        # A damped room: a decaying noise tail, low-passed so highs die first.
        ir = lowpass(c.rng.standard_normal(ir_n), 3000, c.sr) * np.exp(-np.arange(ir_n) / (0.2 * ir_n))
        wet = fftconvolve(mix, ir)[:c.n]
        mix = mix + 0.6 * wet * np.sqrt(np.mean(mix ** 2) / (np.mean(wet ** 2) + 1e-12))
    mix = np.tanh(0.375 * mix / (np.sqrt(np.mean(mix ** 2)) + 1e-9))
    return (0.95 * mix / (np.abs(mix).max() + 1e-9)).astype(np.float32)


def render_track(spec: dict, sr: int = 16000, seconds: float = 4.0) -> np.ndarray:
    """Render one clip from a track's audio spec (see ``world.World.audio_specs``).

    Args:
        spec: genre, tempo (BPM), root (pitch class), minor, instruments, vocal, seed.
        sr: sample rate (Hz).
        seconds: clip length.
    Returns:
        float32 mono waveform, [sr * seconds], peak <= 1.
    """
    g = GENRES[GENRE_INDEX[spec["genre"]]]
    n = int(sr * seconds)
    c = _Clip(sr=sr, n=n, step=int(round(60.0 / spec["tempo"] * sr / 4)), swing=SWING.get(g.drums, 0.0),
              scale=MINOR if spec["minor"] else MAJOR, root=48 + spec["root"],
              rng=np.random.default_rng(spec["seed"]),
              stems={k: np.zeros(n) for k in ("drums", "bass", "chords", "lead")})
    inst = spec["instruments"]
    if g.drums:
        _drums(c, g, inst)
    harmony = _harmony(c, g, inst)
    _lead(c, g, inst, spec["vocal"], harmony)
    return _master(c, g)


def _render_chunk(jobs: list[tuple[dict, str]], sr: int, seconds: float) -> int:
    """Render and write a chunk of clips (runs in a worker process). Returns the count."""
    import soundfile as sf

    for spec, path in jobs:
        fmt = "OGG" if path.endswith(".ogg") else "FLAC"
        sf.write(path, render_track(spec, sr, seconds), sr, format=fmt,
                 subtype="VORBIS" if fmt == "OGG" else "PCM_16")
    return len(jobs)


def render_audio(specs: list[dict], paths: list[str], *, sr: int, seconds: float, workers: int = 1,
                 on_progress: Callable[[int], None] | None = None, chunk: int = 16) -> None:
    """Render ``specs[i]`` to the file ``paths[i]`` (.ogg = Vorbis, .flac = 16-bit FLAC).

    Args:
        specs: per-track audio specs (``World.audio_specs``).
        paths: absolute output paths, one per spec; parent folders must exist.
        sr: sample rate (Hz).
        seconds: clip length.
        workers: processes; 1 renders in this process.
        on_progress: called with the number of clips just finished.
        chunk: clips per task sent to a worker.
    """
    if len(specs) != len(paths):
        raise ValueError(f"{len(specs)} specs but {len(paths)} paths")
    jobs = list(zip(specs, paths, strict=True))
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    if workers <= 1:
        for c in chunks:
            done = _render_chunk(c, sr, seconds)
            if on_progress:
                on_progress(done)
        return
    # spawn, not fork: the caller may run threads (a progress bar) that fork would copy mid-lock.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_render_chunk, c, sr, seconds) for c in chunks]
        for f in as_completed(futures):
            done = f.result()
            if on_progress:
                on_progress(done)
