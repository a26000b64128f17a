"""Audio decoding, resampling and the musicnn log-mel front end, without librosa.

The mel front end reproduces what musicnn's ``extractor.batch_data`` computes with
librosa 0.11 (``librosa.feature.melspectrogram(y, sr=16000, n_fft=512, hop_length=256,
n_mels=96)``): a centred STFT with a periodic Hann window and zero padding, the power
spectrogram, and a Slaney-style mel filterbank (Slaney mel scale, area-normalised
triangles), then ``log10(10000 * x + 1)``. The numeric types follow librosa: the STFT is
computed in float64 and stored as complex64; magnitudes, powers and the filterbank
product are float32. Like musicnn's extractor, the mel powers are rounded to float16
before the log; unlike it, the log is taken in float32, because float16 arithmetic
overflows (``10000 * x`` is inf once x > 6.55) on loud bins of ordinary recordings and the
original extractor then returns garbage tags (see scripts/record_musicnn_reference.py).
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from talkplay.data.errors import DataError

SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96


def load_audio(path: str | Path, sr: int = SR) -> np.ndarray:
    """Decode an audio file to a mono float32 waveform at ``sr`` Hz.

    Channels are averaged (as librosa's ``to_mono``); resampling uses
    ``scipy.signal.resample_poly`` with the reduced up/down ratio.

    Args:
        path: any format libsndfile reads (wav, flac, ogg/vorbis, mp3 with libsndfile >= 1.1).
        sr: target sample rate.

    Returns:
        float32 [n_samples].

    Raises:
        DataError: the file is missing, unreadable or empty.
    """
    try:
        audio, native_sr = sf.read(str(path), dtype="float32", always_2d=True)  # [n, channels]
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise DataError(f"cannot decode audio: {err}", file=str(path)) from err
    if audio.shape[0] == 0:
        raise DataError("audio file has no samples", file=str(path))
    mono = audio.mean(axis=1, dtype=np.float32)
    if native_sr != sr:
        g = gcd(int(native_sr), int(sr))
        mono = resample_poly(mono, sr // g, int(native_sr) // g).astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _hz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa htk=False)."""
    freq = np.asanyarray(freq, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mels = freq / f_sp
    return np.where(freq >= min_log_hz, min_log_mel + np.log(np.maximum(freq, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def mel_filterbank(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney mel filterbank as ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)``.

    Args:
        sr: sample rate (fmax = sr / 2, fmin = 0).
        n_fft: FFT size.
        n_mels: number of bands.

    Returns:
        float32 [n_mels, 1 + n_fft // 2].
    """
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)  # [n_mels + 2, n_bins]
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])  # equal-area triangles
    weights *= enorm[:, np.newaxis]
    return weights


def power_spectrogram(y: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """|STFT|^2 as librosa.stft(center=True, pad_mode="constant", window="hann") computes it.

    Args:
        y: float32 [n_samples].
        n_fft: FFT size (= window length).
        hop: hop length.

    Returns:
        float32 [1 + n_fft // 2, 1 + n_samples // hop].
    """
    if y.shape[0] < 1:
        raise ValueError("empty waveform")
    y = np.asarray(y, dtype=np.float32)
    padded = np.pad(y, n_fft // 2, mode="constant")
    n_frames = 1 + (padded.shape[0] - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]  # [T, n_fft]
    # Periodic Hann window (scipy.signal.get_window("hann", n_fft, fftbins=True)), float64.
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    stft = np.fft.rfft(window * frames, axis=1).astype(np.complex64)  # [T, bins]
    return (np.abs(stft) ** 2).T  # float32 [bins, T]


def melspectrogram(y: np.ndarray, sr: int = SR, n_fft: int = N_FFT, hop: int = HOP,
                   n_mels: int = N_MELS) -> np.ndarray:
    """Mel power spectrogram equal to ``librosa.feature.melspectrogram`` with these arguments.

    Returns:
        float32 [n_mels, n_frames].
    """
    return mel_filterbank(sr, n_fft, n_mels) @ power_spectrogram(y, n_fft, hop)


def log_compress(mel: np.ndarray) -> np.ndarray:
    """musicnn's input scaling: float16-rounded mel power -> log10(10000 x + 1), float32.

    Args:
        mel: mel power, any shape.

    Returns:
        float32 array of the same shape.
    """
    x = mel.astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000.0) * x + np.float32(1.0))


def musicnn_input(y: np.ndarray, min_seconds: float = 3.0) -> np.ndarray:
    """Waveform at 16 kHz -> musicnn log-mel [n_frames, 96] (time first, as the model reads it).

    Waveforms shorter than ``min_seconds`` are zero-padded at the end so that at least one
    3 s patch exists (musicnn's own extractor fails on such clips).

    Args:
        y: float32 [n_samples] at 16 kHz.
        min_seconds: minimum duration after padding.

    Returns:
        float32 [n_frames, 96].
    """
    need = int(round(min_seconds * SR))
    if y.shape[0] < need:
        y = np.pad(y, (0, need - y.shape[0]))
    return log_compress(melspectrogram(y)).T
