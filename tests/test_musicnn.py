"""musicnn port: TF bundle reader, librosa-exact mel front end, and outputs vs. the original TF model.

The reference (tests/data/musicnn_reference.npz) was recorded once with musicnn's own TF1 graph,
checkpoints and librosa by scripts/record_musicnn_reference.py (see its docstring to rerun).
"""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from talkplay.data.errors import DataError
from talkplay.embed import audio_io
from talkplay.embed.musicnn import MTT_TAGS, TAGS, MusicnnEncoder, musicnn_weights_dir, top_tags
from talkplay.embed.protocol import AudioTagger, ItemEncoder
from talkplay.embed.tf_bundle import BundleError, crc32c, read_bundle, read_index, unmask_crc

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"
TOL_TAGS = 1e-5  # probabilities; measured max |diff| ~7e-7
TOL_FEATS = 1e-4  # features up to ~3.3 in magnitude; measured max |diff| ~6e-6

MUSICNN_SHAPES = {
    "batch_normalization/gamma": (1,),
    "conv2d/kernel": (7, 38, 1, 204),
    "conv2d_1/kernel": (7, 67, 1, 204),
    "conv2d_2/kernel": (128, 1, 1, 51),
    "conv2d_3/kernel": (64, 1, 1, 51),
    "conv2d_4/kernel": (32, 1, 1, 51),
    "conv2d_5/kernel": (7, 561, 1, 64),
    "conv2d_6/kernel": (7, 64, 1, 64),
    "conv2d_7/kernel": (7, 64, 1, 64),
    "batch_normalization_9/moving_variance": (1506,),
    "dense/kernel": (1506, 200),
    "batch_normalization_10/beta": (200,),
    "dense_1/kernel": (200, 50),
}
VGG_SHAPES = {"1CNN/kernel": (3, 3, 1, 128), "5CNN/kernel": (3, 3, 128, 128),
              "batch_normalization_5/gamma": (128,), "dense/kernel": (256, 50)}


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as z:
        return {k: z[k] for k in z.files}


@lru_cache(maxsize=4)
def _encoded(model: str, audio_dir: str, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, tags) of the named recordings; cached so several tests share one pass."""
    return MusicnnEncoder(model, device="cpu").encode_with_tags([f"{audio_dir}/{n}" for n in names])


# --- TF tensor bundle ---------------------------------------------------------------------

def test_crc32c_known_answer():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    crc = crc32c(b"abc")
    masked = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF  # LevelDB's mask
    assert unmask_crc(masked) == crc


@pytest.mark.parametrize("model", ["MSD_musicnn", "MTT_musicnn"])
def test_bundle_musicnn_shapes(model):
    tensors = read_bundle(f"{musicnn_weights_dir() / model}/", verify=True)
    for name, shape in MUSICNN_SHAPES.items():
        assert tensors[name].shape == shape, name
        assert tensors[name].dtype == np.float32
    # 11 batch norms x 4 + 8 convs x 2 + 2 dense x 2 = 64 variables; the 42 trainable ones
    # (no moving statistics) carry 2 Adam slots each; + beta1_power, beta2_power.
    assert len(tensors) == 64 + 42 * 2 + 2
    assert all(np.isfinite(v).all() for v in tensors.values())
    assert (tensors["batch_normalization_9/moving_variance"] > 0).all()


@pytest.mark.parametrize("model", ["MSD_vgg", "MTT_vgg"])
def test_bundle_vgg_shapes(model):
    tensors = read_bundle(f"{musicnn_weights_dir() / model}/")
    for name, shape in VGG_SHAPES.items():
        assert tensors[name].shape == shape, name


def test_bundle_detects_corruption(tmp_path):
    src = musicnn_weights_dir() / "MSD_musicnn"
    for name in (".index", ".data-00000-of-00001"):
        shutil.copy(src / name, tmp_path / name)
    entry = read_index(tmp_path / ".index")["dense_1/kernel"]
    data = bytearray((tmp_path / ".data-00000-of-00001").read_bytes())
    data[entry["offset"] + 7] ^= 0x40
    (tmp_path / ".data-00000-of-00001").write_bytes(bytes(data))
    read_bundle(f"{tmp_path}/")  # without verification the flipped bit goes unnoticed
    with pytest.raises(BundleError, match="dense_1/kernel: tensor CRC mismatch"):
        read_bundle(f"{tmp_path}/", verify=True)
    index = bytearray((tmp_path / ".index").read_bytes())
    index[-1] ^= 0xFF
    (tmp_path / ".index").write_bytes(bytes(index))
    with pytest.raises(BundleError, match="magic"):
        read_bundle(f"{tmp_path}/")
    with pytest.raises(BundleError, match="not found"):
        read_bundle(f"{tmp_path}/missing/")


# --- audio decoding and the mel front end -----------------------------------------------------

def test_decode_and_mel_match_librosa_reference(shared_data, ref):
    for name in ref["files"]:
        y = audio_io.load_audio(shared_data / "audio" / name)
        assert y.dtype == np.float32 and len(y) == int(ref[f"wave/{name}/n_samples"])
        np.testing.assert_allclose(y[:2000], ref[f"wave/{name}/head"], atol=1e-7)
        mel = audio_io.melspectrogram(y)
        assert mel.shape == (96, int(ref[f"mel/{name}/n_frames"]))
        # librosa's float32 results; only summation order could differ.
        for part, got in (("head", mel[:, :40]), ("tail", mel[:, -8:])):
            want = ref[f"mel/{name}/{part}"]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * want.max(), err_msg=f"{name} {part}")


def test_mel_filterbank_is_slaney_normalised():
    fb = audio_io.mel_filterbank()
    assert fb.shape == (96, 257) and fb.dtype == np.float32
    assert (fb >= 0).all() and (fb.max(axis=1) > 0).all()
    # Slaney area normalisation: each triangle integrates to 1 over Hz; sampled at the FFT bins
    # (31.25 Hz apart) the sums stay within 0.93 .. 1.07 even for the narrowest low bands.
    assert np.allclose(fb.sum(axis=1) * 16000 / 512, 1.0, atol=0.08)


def test_load_audio_mixes_down_and_resamples(tmp_path):
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, -left + 0.25], axis=1), 44100, subtype="FLOAT")
    y = audio_io.load_audio(path)
    assert y.dtype == np.float32 and len(y) == 16000
    np.testing.assert_allclose(y[2000:14000], 0.125, atol=1e-3)  # (x + (-x + 0.25)) / 2


def test_load_audio_errors_name_the_file(tmp_path):
    bad = tmp_path / "not_audio.ogg"
    bad.write_text("hello")
    with pytest.raises(DataError, match="not_audio.ogg"):
        audio_io.load_audio(bad)
    with pytest.raises(DataError, match="missing.wav"):
        audio_io.load_audio(tmp_path / "missing.wav")


# --- the model vs. the original TensorFlow graph -------------------------------------------------

@pytest.mark.slow
def test_msd_musicnn_matches_tf_reference(shared_data, ref):
    names = tuple(str(n) for n in ref["files"])
    emb, tags = _encoded("MSD_musicnn", str(shared_data / "audio"), names)
    assert emb.shape == (5, 200) and tags.shape == (5, 50) and emb.dtype == tags.dtype == np.float32
    np.testing.assert_allclose(tags, ref["MSD_musicnn/clip_tags"], atol=TOL_TAGS)
    np.testing.assert_allclose(emb, ref["MSD_musicnn/clip_features"], atol=TOL_FEATS)
    enc = MusicnnEncoder(device="cpu")
    for name in (names[0], names[-1]):  # the two shortest recordings
        probs, feats = enc.patch_outputs(shared_data / "audio" / name)
        np.testing.assert_allclose(probs[:8], ref[f"MSD_musicnn/{name}/patch_tags"], atol=TOL_TAGS)
        np.testing.assert_allclose(feats[:8], ref[f"MSD_musicnn/{name}/patch_features"], atol=TOL_FEATS)
    # encode and tag_probs are the two halves of encode_with_tags, batch size does not matter.
    np.testing.assert_allclose(enc.encode([str(shared_data / "audio" / names[-1])], batch_size=1), emb[-1:],
                               atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["MTT_musicnn", "MSD_vgg", "MTT_vgg"])
def test_other_models_match_tf_reference(shared_data, ref, model):
    files = [str(n) for n in ref["files"]]
    names = ("brahms_hungarian_dance_5.ogg", "sorohan_solo_trumpet.ogg")
    rows = [files.index(n) for n in names]
    emb, tags = _encoded(model, str(shared_data / "audio"), names)
    assert emb.shape == (2, 200 if "musicnn" in model else 256)
    np.testing.assert_allclose(tags, ref[f"{model}/clip_tags"][rows], atol=TOL_TAGS)
    np.testing.assert_allclose(emb, ref[f"{model}/clip_features"][rows], atol=TOL_FEATS)


@pytest.mark.slow
def test_tags_are_musically_sensible(shared_data, ref):
    names = tuple(str(n) for n in ref["files"])
    _, msd = _encoded("MSD_musicnn", str(shared_data / "audio"), names)
    top = {n: [t for t, _ in row] for n, row in zip(names, top_tags(msd, TAGS, k=3), strict=True)}
    p = {n: dict(zip(TAGS, row, strict=True)) for n, row in zip(names, msd, strict=True)}
    assert top["macleod_vibe_ace.ogg"][0] == "jazz"
    assert top["sorohan_solo_trumpet.ogg"][0] == "jazz" and p["sorohan_solo_trumpet.ogg"]["jazz"] > 0.5
    assert "female vocalists" in top["hobbs_lets_go_fishin.ogg"]  # the only sung recording
    # The MSD vocabulary has no "classical"; the orchestral pieces read as instrumental, not sung.
    for n in ("brahms_hungarian_dance_5.ogg", "macleod_sugar_plum_fairy.ogg"):
        assert "instrumental" in top[n]
        assert p[n]["female vocalists"] < 0.1 and p[n]["male vocalists"] < 0.1
        assert p[n]["instrumental"] > 2 * p["hobbs_lets_go_fishin.ogg"]["instrumental"]
    # MagnaTagATune has "classical": both orchestral pieces get it first, with strings.
    mtt_names = ("brahms_hungarian_dance_5.ogg", "macleod_sugar_plum_fairy.ogg")
    _, mtt = _encoded("MTT_musicnn", str(shared_data / "audio"), mtt_names)
    for row in top_tags(mtt, MTT_TAGS, k=3):
        assert row[0][0] == "classical" and "strings" in [t for t, _ in row]


@pytest.mark.slow
def test_short_clip_is_zero_padded(tmp_path):
    sr = 22050
    t = np.arange(int(1.2 * sr)) / sr
    clip = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    path = tmp_path / "short.wav"
    sf.write(path, clip, sr, subtype="FLOAT")
    enc = MusicnnEncoder(device="cpu")
    assert isinstance(enc, ItemEncoder) and isinstance(enc, AudioTagger)
    assert enc.name == "MSD_musicnn" and enc.dim == 200 and enc.tags == list(TAGS)
    emb, tags = enc.encode_with_tags([str(path)])
    assert emb.shape == (1, 200) and np.isfinite(emb).all() and ((tags > 0) & (tags < 1)).all()
    y = np.pad(audio_io.load_audio(path), (0, 48000 - 19200))
    probs, feats = enc.forward_patches(audio_io.log_compress(audio_io.melspectrogram(y)).T[None, :187])
    np.testing.assert_allclose(emb, feats, atol=1e-6)


def test_unknown_model_is_rejected():
    with pytest.raises(ValueError, match="MSD_musicnn"):
        MusicnnEncoder("MSD_musicnn_big")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(shared_data, ref):
    path = [str(shared_data / "audio" / "brahms_hungarian_dance_5.ogg")]
    cpu = MusicnnEncoder(device="cpu").encode_with_tags(path)
    gpu = MusicnnEncoder(device="cuda").encode_with_tags(path)
    np.testing.assert_allclose(gpu[1], cpu[1], atol=1e-4)
    np.testing.assert_allclose(gpu[0], cpu[0], atol=1e-3)
