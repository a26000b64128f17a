"""Record musicnn reference outputs with the ORIGINAL TensorFlow model code and librosa.

tests/test_musicnn.py checks the PyTorch port (talkplay.embed.musicnn) against the file this
script writes, tests/data/musicnn_reference.npz. It was run once; rerun it only to regenerate
the reference (e.g. for new recordings). It needs TensorFlow, which talkplay never needs at run
time, so it runs in a throwaway venv outside the repository and imports nothing from talkplay:

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu tf_keras librosa soundfile scipy
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfenv/bin/python scripts/record_musicnn_reference.py \
        --audio-dir ../shared/data/audio --out tests/data/musicnn_reference.npz

(Recorded with Python 3.11, tensorflow-cpu 2.21, tf_keras 2.21, librosa 0.11, numpy 2.4.)
The graph is musicnn's own ``models.define_model`` (it already uses ``tf.compat.v1`` names;
TF 2.16+ only needs ``TF_USE_LEGACY_KERAS=1`` and the tf_keras package for
``tf.compat.v1.layers``), restored from the packaged checkpoints with ``tf.compat.v1.train.Saver``
exactly as musicnn's ``extractor.extractor`` does.

What is recorded, per recording:
- ``wave/{f}/head``: the first 2000 samples of the decoded 16 kHz mono waveform (soundfile +
  scipy.signal.resample_poly, the same decoding as talkplay.embed.audio_io) and its length.
- ``mel/{f}/head``, ``mel/{f}/tail``: librosa's mel power spectrogram (extractor settings) of that
  waveform, first 40 and last 8 frames [96, n].
- ``{model}/clip_tags`` [n_files, 50] and ``{model}/clip_features`` [n_files, d]: sigmoid tag
  probabilities and features ('penultimate' for musicnn, flattened 'pool5' for vgg), averaged
  over the non-overlapping 3 s patches; ``MSD_musicnn/{f}/patch_tags|patch_features`` for the
  first 8 patches. The model input is librosa's mel -> float16 -> log10(10000 x + 1) in float32.
- ``extractor_float16/MSD_musicnn/clip_tags``: the unmodified ``musicnn.extractor.extractor``
  (librosa.load with soxr resampling, and log10 computed in float16 arithmetic, which overflows
  to inf on loud mel bins) -- kept to document why the port computes the log in float32.
- ``librosa_load/MSD_musicnn/clip_tags``: the same as ``MSD_musicnn/clip_tags`` but decoding with
  ``librosa.load`` (soxr resampler) instead of resample_poly -- the size of the resampler effect.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import warnings  # noqa: E402
from math import gcd  # noqa: E402
from pathlib import Path  # noqa: E402

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import soundfile as sf  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy.signal import resample_poly  # noqa: E402

tf.compat.v1.disable_eager_execution()
warnings.filterwarnings("ignore")

from musicnn import configuration as config  # noqa: E402
from musicnn import extractor as musicnn_extractor  # noqa: E402
from musicnn import models  # noqa: E402

MODELS = ["MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg"]
N_FRAMES = 187  # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
PATCHES_KEPT = 8
MEL_HEAD, MEL_TAIL, WAVE_HEAD = 40, 8, 2000


def decode(path: Path) -> np.ndarray:
    """soundfile -> channel mean -> resample_poly to 16 kHz, float32 (as talkplay.embed.audio_io)."""
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1, dtype=np.float32)
    if sr != config.SR:
        g = gcd(int(sr), config.SR)
        mono = resample_poly(mono, config.SR // g, int(sr) // g).astype(np.float32)
    return mono


def mel_power(y: np.ndarray) -> np.ndarray:
    """librosa mel power [96, T], with musicnn's extractor settings."""
    return librosa.feature.melspectrogram(y=y, sr=config.SR, hop_length=config.FFT_HOP,
                                          n_fft=config.FFT_SIZE, n_mels=config.N_MELS)


def model_input(mel: np.ndarray) -> np.ndarray:
    """[96, T] mel power -> [n_patches, 187, 96] log-mel patches (extractor.batch_data's loop)."""
    rep = mel.T.astype(np.float16).astype(np.float32)
    rep = np.log10(np.float32(10000) * rep + np.float32(1))
    starts = range(0, rep.shape[0] - N_FRAMES + 1, N_FRAMES)
    return np.stack([rep[s : s + N_FRAMES] for s in starts])


class OriginalModel:
    """musicnn's TF1 graph and checkpoint, built and restored as extractor.extractor does."""

    def __init__(self, name: str, musicnn_dir: Path):
        self.name = name
        self.graph = tf.Graph()
        with self.graph.as_default():
            with tf.name_scope("model"):
                self.x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, config.N_MELS])
                self.is_training = tf.compat.v1.placeholder(tf.bool)
                out = models.define_model(self.x, self.is_training, name, 50)
                self.probs = tf.nn.sigmoid(out[0])
                # musicnn: (y, timbral, ..., penultimate); vgg: (y, pool1, ..., pool5)
                self.features = out[-1]
            self.sess = tf.compat.v1.Session(graph=self.graph)
            self.sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().restore(self.sess, str(musicnn_dir / name) + "/")

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, feats = self.sess.run([self.probs, self.features],
                                     feed_dict={self.x: batch, self.is_training: False})
        return probs, feats.reshape(len(batch), -1)  # vgg pool5 [B, 2, 1, 128] -> NHWC flatten


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    musicnn_dir = Path(musicnn_extractor.__file__).parent
    files = sorted(args.audio_dir.glob("*.ogg"))
    if not files:
        raise SystemExit(f"no .ogg files in {args.audio_dir}")

    out: dict[str, np.ndarray] = {"files": np.array([f.name for f in files]),
                                  "msd_labels": np.array(config.MSD_LABELS),
                                  "mtt_labels": np.array(config.MTT_LABELS)}
    inputs = {}
    for f in files:
        y = decode(f)
        mel = mel_power(y)
        out[f"wave/{f.name}/head"] = y[:WAVE_HEAD]
        out[f"wave/{f.name}/n_samples"] = np.array(len(y))
        out[f"mel/{f.name}/head"] = mel[:, :MEL_HEAD]
        out[f"mel/{f.name}/tail"] = mel[:, -MEL_TAIL:]
        out[f"mel/{f.name}/n_frames"] = np.array(mel.shape[1])
        inputs[f.name] = model_input(mel)

    for name in MODELS:
        model = OriginalModel(name, musicnn_dir)
        tags, feats = [], []
        for f in files:
            probs, features = model(inputs[f.name])
            tags.append(probs.mean(0))
            feats.append(features.mean(0))
            if name == "MSD_musicnn":
                out[f"{name}/{f.name}/patch_tags"] = probs[:PATCHES_KEPT]
                out[f"{name}/{f.name}/patch_features"] = features[:PATCHES_KEPT]
        out[f"{name}/clip_tags"] = np.stack(tags)
        out[f"{name}/clip_features"] = np.stack(feats)
        print(name, "done")

    msd = OriginalModel("MSD_musicnn", musicnn_dir)
    out["librosa_load/MSD_musicnn/clip_tags"] = np.stack([
        msd(model_input(mel_power(librosa.load(str(f), sr=config.SR)[0])))[0].mean(0) for f in files])
    out["extractor_float16/MSD_musicnn/clip_tags"] = np.stack([
        musicnn_extractor.extractor(str(f), model="MSD_musicnn", extract_features=False)[0].mean(0)
        for f in files])

    out["meta"] = np.array(json.dumps({
        "tensorflow": tf.__version__, "librosa": librosa.__version__, "numpy": np.__version__,
        "scipy": scipy.__version__, "soundfile": sf.__version__,
        "n_patches": {f.name: int(len(inputs[f.name])) for f in files}}))
    out = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in out.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    for i, f in enumerate(files):
        top = np.argsort(-out["MSD_musicnn/clip_tags"][i])[:5]
        print(f.name, [(config.MSD_LABELS[j], round(float(out["MSD_musicnn/clip_tags"][i, j]), 3)) for j in top])


if __name__ == "__main__":
    main()
