"""Audio of the embedded music world: a short arrangement per track, synthesised with numpy.

A clip is drums (a pattern per genre at the track's tempo: kick as a falling sine, snare and
hats as shaped noise, a swung ride for jazz, double kicks for metal), a bass line and chords
in the track's key and mode, and a lead (a formant-synthesised voice, rapped or sung, or a
lead instrument). Timbres: plucked strings by Karplus-Strong (guitars, basses), additive
partials (piano, organ), FM (brass, saxophone, synth lead), detuned sawtooths (pads, bowed
strings, distorted power chords through a tanh clipper), an 808 sub. Genres with a hall get
a noise-tail reverb. All randomness comes from the track's own seed.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
from scipy.signal import fftconvolve, lfilter

from talkplay.data.world_genres import GENRE_INDEX, GENRES

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
REVERB = {"classical": 1.6, "ambient": 2.5, "jazz": 0.6, "folk": 0.5}
VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240))


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _saw(f: float | np.ndarray, n: int, sr: int, rng) -> np.ndarray:
    phase = np.cumsum(np.broadcast_to(np.float32(f) if np.isscalar(f) else f.astype(np.float32), (n,))) / sr + rng.random()
    return 2 * (phase % 1.0) - 1


def _lowpass(x: np.ndarray, cutoff: float, sr: int) -> np.ndarray:
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


def _voice(inst: str, f: float, n: int, sr: int, rng) -> np.ndarray:
    """One note of ``inst`` at ``f`` Hz, ``n`` samples: [n] float."""
    t = np.arange(n, dtype=np.float32) / sr
    if inst in ("acoustic guitar", "electric guitar", "upright bass", "bass"):
        y = _pluck(f, n, sr, rng, 0.994 if "bass" in inst else 0.997, soft=inst == "acoustic guitar")
        if inst == "electric guitar":
            y = np.tanh(2.5 * y)
        return _lowpass(y, 900, sr) if "bass" in inst else y
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
        y = _lowpass(y, 2200 if inst != "synth pad" else 1200, sr)
        fade = np.minimum(1, (n - np.arange(n)) / (0.1 * sr))
        return y * _env(n, sr, 0.25 if inst != "synth pad" else 0.6, 20) * fade
    if inst == "distorted guitar":
        y = sum(_saw(f * r * d, n, sr, rng) for r in (1, 1.5, 2) for d in (1, 1.006))
        return _lowpass(np.tanh(4 * y), 3000, sr) * _env(n, sr, .002, 1.5)
    if inst == "synth bass":
        return _lowpass(_saw(f, n, sr, rng), 500, sr) * _env(n, sr, .003, .35)
    if inst == "808":
        fr = f * (1 + 1.5 * np.exp(-t / 0.03))
        return np.tanh(1.8 * np.sin(2 * np.pi * np.cumsum(fr) / sr)) * _env(n, sr, .002, .8)
    raise ValueError(f"unknown instrument {inst!r}")


def _drum(part: str, kit: str, sr: int, rng) -> np.ndarray:
    n = int(0.5 * sr)
    t = np.arange(n, dtype=np.float32) / sr
    noise = rng.standard_normal(n, dtype=np.float32)
    hp = np.diff(np.diff(noise, prepend=0), prepend=0)  # second difference: crude high-pass
    if part == "kick":
        f = 45 + (110 if kit == "drums" else 150) * np.exp(-t / 0.04)
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / (0.18 if kit == "drums" else 0.3))
    if part == "snare":
        tone = np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05)
        return 0.6 * tone + 0.5 * _lowpass(noise, 5000, sr) * np.exp(-t / (0.12 if kit == "drums" else 0.08))
    if part in ("hat", "pedal"):
        return 0.25 * hp * np.exp(-t / 0.025)
    if part == "open":
        return 0.25 * hp * np.exp(-t / 0.15)
    metal = sum(np.sin(2 * np.pi * fr * t) for fr in (3120, 4230, 5150, 6340))  # ride cymbal
    return (0.15 * hp + 0.08 * metal) * np.exp(-t / 0.35)


def _add(buf: np.ndarray, x: np.ndarray, at: int, gain: float) -> None:
    if at < len(buf):
        m = min(len(x), len(buf) - at)
        buf[at:at + m] += gain * x[:m]


def _sing(buf, notes, sr, rng, rap: bool, female: bool) -> None:
    """Formant voice: a sawtooth glottal source through three vowel resonators per syllable."""
    for at, midi, n in notes:
        t = np.arange(n, dtype=np.float32) / sr
        f0 = _hz(midi) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t)) if not rap else \
            (230 if female else 125) * (1.15 - 0.25 * t / max(t[-1], 1e-3))
        y = _saw(f0, n, sr, rng)
        out = 0
        for fc, bw in zip(VOWELS[int(rng.integers(5))], (80, 100, 120), strict=True):
            r = np.exp(-np.pi * bw / sr)
            out = out + lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * fc / sr), r * r], y)
        env = _env(n, sr, 0.02, 0.15 if rap else 2) * np.minimum(1, (n - np.arange(n)) / (0.03 * sr))
        if rap:  # a consonant burst at the start of each syllable
            out[: int(0.03 * sr)] += 0.3 * rng.standard_normal(int(0.03 * sr))[: n]
        _add(buf, out * env, at, 1.0)


def render_track(spec: dict, sr: int = 16000, seconds: float = 4.0) -> np.ndarray:
    """Render one clip from a track's audio spec (see ``world.World.audio_specs``).

    Args:
        spec: genre, tempo (BPM), root (pitch class), minor, instruments, vocal, seed.
        sr: sample rate (Hz).
        seconds: clip length.
    Returns:
        float32 mono waveform, [sr * seconds], peak <= 1.
    """
    rng = np.random.default_rng(spec["seed"])
    g = GENRES[GENRE_INDEX[spec["genre"]]]
    n = int(sr * seconds)
    beat = 60.0 / spec["tempo"]
    step = int(round(beat * sr / 4))  # one 16th in samples
    scale = MINOR if spec["minor"] else MAJOR
    root, inst = 48 + spec["root"], spec["instruments"]
    swing = SWING.get(g.drums, 0.0)
    n_steps = n // step + 1
    pos = lambda s: s * step + (int(swing * 2 * step) if s % 4 == 2 else 0)  # noqa: E731
    parts = {k: np.zeros(n) for k in ("drums", "bass", "chords", "lead")}

    def note(d: int, octave: int = 0) -> int:  # scale degree -> MIDI
        return root + 12 * (octave + d // 7) + scale[d % 7]

    if g.drums:
        kit = "drum machine" if "drum machine" in inst else "drums"
        for part, steps in DRUMS[g.drums].items():
            hit = _drum(part, kit, sr, rng)
            for s in range(n_steps):
                if s % 16 in steps:
                    vel = 0.6 + 0.4 * rng.random() if part in ("hat", "ride") else 1.0
                    _add(parts["drums"], hit, pos(s), vel)
    chord_len = {"jazz": 8, "classical": 8, "ambient": 32}.get(g.name, 16)  # in 16ths
    prog = PROGRESSIONS[g.progression]
    harmony = next((i for i in inst if i in ("distorted guitar", "acoustic guitar", "electric guitar", "piano",
                                               "strings", "synth pad", "synth lead")), "piano")
    cache: dict[tuple, np.ndarray] = {}

    def play(part: str, instrument: str, midi: int, at: int, length: int, gain: float) -> None:
        # Notes ring at most 2 s and stop at the clip end (sustained chords would overrun it).
        length = min(length, 2 * sr, n - step * (at // step))
        if at >= n:
            return
        key = (instrument, midi, length)
        if key not in cache:
            cache[key] = _voice(instrument, _hz(midi), length, sr, rng)
        _add(parts[part], cache[key], at, gain)

    for c in range(0, n_steps, chord_len):
        deg = prog[(c // chord_len) % len(prog)]
        tones = [note(deg + i, 1) for i in ((0, 2, 4, 6) if g.name == "jazz" else (0, 2, 4))]
        span = chord_len * step
        if g.comp == "sustain":
            for m in tones:
                play("chords", harmony, m, pos(c), span + step, 0.5)
        elif g.comp == "power":
            sub = 1 if g.name == "metal" else 2
            for s in range(c, c + chord_len, sub):
                play("chords", harmony, tones[0] - 12, pos(s), step * sub, 0.8)
        else:
            hits = {"strum": range(0, chord_len, 2), "arp": range(chord_len), "skank": range(4, chord_len, 8),
                    "block": range(0, chord_len, 4),
                    "comp": [s for s in (0, 3, 6) if rng.random() < 0.7]}[g.comp]
            for s in hits:
                notes = [tones[s % len(tones)] + 12 * (s // 4 % 2)] if g.comp == "arp" else tones
                dur = step * (1 if g.comp in ("skank", "arp") else 4)
                for j, m in enumerate(notes):
                    play("chords", harmony, m, pos(c + s) + (j * int(0.012 * sr) if g.comp == "strum" else 0),
                         dur, 0.5)
        bass_inst = next((i for i in inst if i in ("upright bass", "bass", "synth bass", "808", "cello")), harmony)
        steps = {"walking": range(0, chord_len, 4), "root8": range(0, chord_len, 2), "offbeat": range(2, chord_len, 4),
                 "sub": (0, 6), "root": range(0, chord_len, 8)}.get(g.bass, ())
        for s in steps:
            m = note(deg) - 12 + (scale[int(rng.integers(1, 5))] if g.bass == "walking" and s else 0)
            play("bass", bass_inst, m, pos(c + s), step * (8 if g.bass in ("sub", "root") else 4), 1.0)
    vocal = spec["vocal"]
    rhythm = 1 if vocal == "rap" else 2 if g.name in ("jazz", "metal", "rock") else 4
    if vocal != "instrumental":
        octave = 1 if "female" in vocal else 0
        notes, s, d = [], int(rng.integers(0, 4)), int(rng.integers(0, 5))
        while s < n_steps:
            d = int(np.clip(d + rng.integers(-2, 3), 0, 9))
            length = rhythm * int(rng.choice([1, 1, 2]))
            notes.append((pos(s), note(d, octave), length * step))
            s += length
        _sing(parts["lead"], notes, sr, rng, vocal == "rap", "female" in vocal)
    else:
        lead = next((i for i in inst if i in ("saxophone", "trumpet", "flute", "cello") and i != harmony), None)
        s, d = 0, 4
        while lead and s < n_steps:
            d = int(np.clip(d + rng.integers(-2, 3), 0, 11))
            length = 2 * int(rng.choice([1, 1, 2, 4]))
            play("lead", lead, note(d, 1), pos(s), length * step, 0.6)
            s += length
    gains = {"drums": 1.0, "bass": 0.8, "chords": 0.7, "lead": 0.8}
    mix = sum(gains[k] * v / (np.sqrt(np.mean(v ** 2)) + 1e-6) for k, v in parts.items() if v.any())
    if g.name in REVERB:
        ir_n = int(REVERB[g.name] * sr / 2)
        # A damped room: a decaying noise tail, low-passed so highs die first.
        ir = _lowpass(rng.standard_normal(ir_n), 3000, sr) * np.exp(-np.arange(ir_n) / (0.2 * ir_n))
        wet = fftconvolve(mix, ir)[:n]
        mix = mix + 0.6 * wet * np.sqrt(np.mean(mix ** 2) / (np.mean(wet ** 2) + 1e-12))
    mix = np.tanh(0.25 * mix / (np.sqrt(np.mean(mix ** 2)) + 1e-9) * 1.5)
    return (0.95 * mix / (np.abs(mix).max() + 1e-9)).astype(np.float32)


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
