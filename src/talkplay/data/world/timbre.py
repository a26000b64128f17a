"""Timbres of the embedded music world's audio: one note or drum hit at a time, in numpy.

Plucked strings by Karplus-Strong (guitars, basses), additive partials (piano, organ), FM
(brass, saxophone, synth lead), detuned sawtooths (pads, bowed strings, distorted power
chords through a tanh clipper), an 808 sub, noise-shaped drums and a formant-synthesised
voice. ``world.audio`` arranges them into clips.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240))
"""Formant frequencies (Hz) of a, e, i, o, u."""


def hz(midi: float) -> float:
    """Frequency (Hz) of a MIDI note number (69 = A4 = 440 Hz)."""
    return 440.0 * 2 ** ((midi - 69) / 12)


def _saw(f: float | np.ndarray, n: int, sr: int, rng) -> np.ndarray:
    phase = np.cumsum(np.broadcast_to(np.float32(f) if np.isscalar(f) else f.astype(np.float32), (n,))) / sr + rng.random()
    return 2 * (phase % 1.0) - 1


def lowpass(x: np.ndarray, cutoff: float, sr: int) -> np.ndarray:
    """A gentle (12 dB/octave) low-pass of ``x`` at ``cutoff`` Hz; same shape."""
    a = np.exp(-2 * np.pi * cutoff / sr)  # one-pole, applied twice for 12 dB/octave
    return lfilter([1 - a], [1, -a], lfilter([1 - a], [1, -a], x))


def _env(n: int, sr: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / sr
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / decay)


def _pluck(f: float, n: int, sr: int, rng, damp: float = 0.996, soft: bool = False) -> np.ndarray:
    """Karplus-Strong, computed one period-block at a time: y[i] = x[i] + g (y[i-N] + y[i-N-1]) / 2."""
    p = max(2, int(round(sr / f)))
    y = np.zeros(n + p + 1)
    burst = rng.uniform(-1, 1, p)
    # A soft pluck (finger on nylon/steel) starts from a smoothed burst: fewer high partials.
    y[1:p + 1] = np.convolve(burst, np.ones(4) / 4, mode="same") if soft else burst
    for i in range(p + 1, n + p + 1, p):
        j = min(i + p, n + p + 1)
        y[i:j] = damp * 0.5 * (y[i - p:j - p] + y[i - p - 1:j - p - 1])
    return y[1:n + 1]


def voice(inst: str, f: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of an instrument.

    Args:
        inst: an instrument name used by ``world.genres`` (piano, strings, 808, ...).
        f: pitch in Hz.
        n: length in samples.
        sr: sample rate.
        rng: generator (pluck bursts, oscillator phases, breath noise).
    Returns:
        The note, [n] float, roughly unit peak.
    """
    t = np.arange(n, dtype=np.float32) / sr
    if inst in ("acoustic guitar", "electric guitar", "upright bass", "bass"):
        y = _pluck(f, n, sr, rng, 0.994 if "bass" in inst else 0.997, soft=inst == "acoustic guitar")
        if inst == "electric guitar":
            y = np.tanh(2.5 * y)
        return lowpass(y, 900, sr) if "bass" in inst else y
    if inst == "piano":
        return sum(np.sin(2 * np.pi * f * k * (1 + 0.0004 * k * k) * t) * np.exp(-t * (1.5 + 0.9 * k)) / k ** 1.3
                   for k in range(1, 6)) * np.minimum(1, t / 0.003)
    if inst == "organ":
        vib = f * (1 + 0.004 * np.sin(2 * np.pi * 6 * t))
        return sum(np.sin(2 * np.pi * np.cumsum(vib * k) / sr) * a for k, a in ((1, 1), (2, .6), (3, .4), (4, .3), (8, .2))) * _env(n, sr, .01, 9)
    if inst in ("saxophone", "trumpet", "synth lead"):
        ratio, depth = {"saxophone": (1, 2.5), "trumpet": (1, 4.0), "synth lead": (2, 3.0)}[inst]
        vib = f * (1 + 0.006 * np.sin(2 * np.pi * 5.5 * t))
        ph = 2 * np.pi * np.cumsum(vib) / sr
        env = _env(n, sr, 0.04, 0.6 if inst == "synth lead" else 3)
        return np.sin(ph + depth * env * np.sin(ratio * ph)) * env
    if inst == "flute":
        vib = f * (1 + 0.005 * np.sin(2 * np.pi * 5 * t))
        ph = 2 * np.pi * np.cumsum(vib) / sr
        return (np.sin(ph) + 0.15 * np.sin(2 * ph) + 0.08 * rng.standard_normal(n)) * _env(n, sr, 0.08, 4)
    if inst in ("strings", "cello", "synth pad"):
        det = (0.997, 1.0, 1.004)
        vib = 1 + (0.005 if inst != "synth pad" else 0.0) * np.sin(2 * np.pi * 5.5 * t)
        y = sum(_saw(f * d * vib, n, sr, rng) for d in det)
        y = lowpass(y, 1600 if inst != "synth pad" else 1200, sr)
        fade = np.minimum(1, (n - np.arange(n)) / (0.1 * sr))
        return y * _env(n, sr, 0.25 if inst != "synth pad" else 0.6, 20) * fade
    if inst == "distorted guitar":
        # Power chord (root, fifth, octave) of plucked strings, clipped hard, through a "cabinet".
        y = sum(_pluck(f * r, n, sr, rng, 0.998) for r in (1, 1.5, 2))
        return lowpass(np.tanh(6 * y), 3500, sr)
    if inst == "synth bass":
        return lowpass(_saw(f, n, sr, rng), 500, sr) * _env(n, sr, .003, .35)
    if inst == "808":
        fr = f * (1 + 1.5 * np.exp(-t / 0.03))
        return np.tanh(1.8 * np.sin(2 * np.pi * np.cumsum(fr) / sr)) * _env(n, sr, .002, .8)
    raise ValueError(f"unknown instrument {inst!r}")


def drum(part: str, kit: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One 0.5 s drum hit: kick, snare, hat, pedal, open (hat) or ride; kit "drums" or "drum machine"."""
    n = int(0.5 * sr)
    t = np.arange(n, dtype=np.float32) / sr
    noise = rng.standard_normal(n, dtype=np.float32)
    hp = np.diff(np.diff(noise, prepend=0), prepend=0)  # second difference: crude high-pass
    if part == "kick":
        f = 45 + (110 if kit == "drums" else 150) * np.exp(-t / 0.04)
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / (0.18 if kit == "drums" else 0.3))
    if part == "snare":
        tone = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)
        return 0.6 * tone + 0.5 * lowpass(noise, 5000, sr) * np.exp(-t / (0.12 if kit == "drums" else 0.08))
    if part in ("hat", "pedal"):
        return 0.25 * hp * np.exp(-t / 0.025)
    if part == "open":
        return 0.25 * hp * np.exp(-t / 0.15)
    metal = sum(np.sin(2 * np.pi * fr * t) for fr in (3120, 4230, 5150, 6340))  # ride cymbal
    return (0.15 * hp + 0.08 * metal) * np.exp(-t / 0.35)


def add(buf: np.ndarray, x: np.ndarray, at: int, gain: float) -> None:
    """Mix ``gain * x`` into ``buf`` from sample ``at`` on, cut at the end of ``buf``."""
    if at < len(buf):
        m = min(len(x), len(buf) - at)
        buf[at:at + m] += gain * x[:m]


def sing(buf: np.ndarray, notes: list[tuple[int, int, int]], sr: int, rng: np.random.Generator,
         rap: bool, female: bool) -> None:
    """Formant voice: a sawtooth glottal source through three vowel resonators per syllable.

    Args:
        buf: the stem to mix into, [n].
        notes: (start sample, MIDI pitch, length in samples) per syllable.
        sr: sample rate.
        rng: generator (vowels, consonant noise).
        rap: spoken contour (falling pitch, short syllables, consonant bursts) instead of the melody.
        female: higher speaking pitch when rapping.
    """
    for at, midi, n in notes:
        t = np.arange(n, dtype=np.float32) / sr
        f0 = hz(midi) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t)) if not rap else \
            (230 if female else 125) * (1.15 - 0.25 * t / max(t[-1], 1e-3))
        y = _saw(f0, n, sr, rng)
        out = 0
        for fc, bw in zip(VOWELS[int(rng.integers(5))], (80, 100, 120), strict=True):
            r = np.exp(-np.pi * bw / sr)
            out = out + lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * fc / sr), r * r], y)
        env = _env(n, sr, 0.02, 0.15 if rap else 2) * np.minimum(1, (n - np.arange(n)) / (0.03 * sr))
        if rap:  # a consonant burst at the start of each syllable
            out[: int(0.03 * sr)] += 0.3 * rng.standard_normal(int(0.03 * sr))[: n]
        add(buf, out * env, at, 1.0)
