"""The default audio encoder: musicnn (Pons & Serra 2019) in PyTorch, no TensorFlow at run time.

Weights come from the ``musicnn==0.1.0`` PyPI package (install it with ``--no-deps``; it is
never imported, only its checkpoint folders are read with ``tf_bundle.read_bundle``).

Per recording: decode to 16 kHz mono, log-mel [T, 96], non-overlapping 3 s patches of 187
frames (a trailing partial patch is dropped, as in musicnn's extractor; recordings shorter
than 3 s are zero-padded to 3 s so they still give one patch). The track embedding is the
mean over patches of the back-end's penultimate layer (musicnn's 'penultimate' feature, 200-d;
for the VGG models, the flattened 'pool5', 256-d); tag probabilities are the mean over patches
of the sigmoid outputs, as musicnn's tagger averages its taggram.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from talkplay.embed.audio_io import load_audio, musicnn_input
from talkplay.embed.musicnn_model import SPECS, build_model, patches
from talkplay.embed.tf_bundle import read_bundle

log = logging.getLogger(__name__)

# Tag vocabularies, in the models' output order (musicnn/configuration.py).
TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)  # fmt: skip
MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
MODELS: tuple[str, ...] = tuple(SPECS)
DEFAULT_MODEL = "MSD_musicnn"


def musicnn_weights_dir() -> Path:
    """Folder of the installed ``musicnn`` package (holds ``{MSD,MTT}_{musicnn,vgg}/``).

    Raises:
        RuntimeError: the package is not installed.
    """
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("musicnn weights not found: pip install --no-deps musicnn==0.1.0")
    return Path(list(spec.submodule_search_locations)[0])


def default_device() -> str:
    """"cuda" when a GPU is visible, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class MusicnnEncoder:
    """Audio files -> musicnn embeddings and tag probabilities (an ``ItemEncoder``).

    Args:
        model: one of ``MODELS``: "MSD_musicnn" (default; 50 Last.fm tags, 200-d),
            "MTT_musicnn" (50 MagnaTagATune tags, 200-d), "MSD_vgg", "MTT_vgg" (256-d).
        device: torch device; None or "auto": CUDA when available, else CPU.
        weights_dir: folder holding ``{model}/`` checkpoints; default the musicnn package.
    """

    def __init__(self, model: str = DEFAULT_MODEL, device: str | None = None,
                 weights_dir: str | Path | None = None):
        if model not in SPECS:
            raise ValueError(f"unknown musicnn model {model!r}; choose one of {list(MODELS)}")
        folder = Path(weights_dir) if weights_dir is not None else musicnn_weights_dir()
        self.name = model
        self.device = torch.device(default_device() if device in (None, "auto") else device)
        # The packaged checkpoints have prefix "{model}/" (files ".index", ".data-...").
        self.net = build_model(model, read_bundle(f"{folder / model}/")).to(self.device)
        self.dim = SPECS[model].num_units_backend if SPECS[model].arch == "musicnn" else 256
        self.tags: list[str] = list(TAGS if model.startswith("MSD") else MTT_TAGS)

    @torch.no_grad()
    def forward_patches(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on log-mel patches.

        Args:
            x: float32 [n_patches, 187, 96].

        Returns:
            (tag probabilities float32 [n_patches, 50], features float32 [n_patches, dim]).
        """
        logits, feats = self.net(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device))
        return torch.sigmoid(logits).cpu().numpy(), feats.cpu().numpy()

    def patch_outputs(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """Per-patch tag probabilities [P, 50] and features [P, dim] of one recording (a taggram)."""
        return self.forward_patches(np.stack(list(patches(musicnn_input(load_audio(path))))))

    def encode_with_tags(self, paths: Sequence[str | Path], batch_size: int = 32,
                         progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and tag probabilities of many recordings in one pass.

        Patches of consecutive files share batches, so short clips still fill the device.

        Args:
            paths: audio files.
            batch_size: 3 s patches per forward pass.
            progress: called with 1 after each file is decoded (for progress bars).

        Returns:
            (embeddings float32 [n, dim], tag probabilities float32 [n, 50]), each the mean
            over the file's patches.

        Raises:
            DataError: a file cannot be decoded.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(paths)
        feat_sum = np.zeros((n, self.dim), dtype=np.float64)
        tag_sum = np.zeros((n, len(self.tags)), dtype=np.float64)
        counts = np.zeros(n, dtype=np.int64)
        buf: list[np.ndarray] = []
        owners: list[int] = []

        def flush() -> None:
            if buf:
                probs, feats = self.forward_patches(np.stack(buf))
                np.add.at(tag_sum, owners, probs)
                np.add.at(feat_sum, owners, feats)
                np.add.at(counts, owners, 1)
                buf.clear()
                owners.clear()

        for i, path in enumerate(paths):
            for patch in patches(musicnn_input(load_audio(path))):
                buf.append(patch)
                owners.append(i)
                if len(buf) == batch_size:
                    flush()
            log.debug("musicnn: decoded %s", path)
            if progress is not None:
                progress(1)
        flush()
        return ((feat_sum / counts[:, None]).astype(np.float32),
                (tag_sum / counts[:, None]).astype(np.float32))

    def encode(self, paths: list[str], batch_size: int = 32) -> np.ndarray:
        """Track embeddings: mean penultimate features, float32 [n, dim] (see encode_with_tags)."""
        return self.encode_with_tags(paths, batch_size)[0]

    def tag_probs(self, paths: list[str], batch_size: int = 32) -> np.ndarray:
        """Mean tag probabilities over 3 s patches, float32 [n, 50] in ``self.tags`` order."""
        return self.encode_with_tags(paths, batch_size)[1]


def top_tags(probs: np.ndarray, tags: Sequence[str] = TAGS, k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable tags per row of ``probs`` [n, len(tags)], best first."""
    order = np.argsort(-probs, axis=1)[:, :k]
    return [[(tags[j], float(row[j])) for j in idx] for row, idx in zip(probs, order, strict=True)]
