"""A real CLAP (transformers ClapModel) baseline, for users who have CLAP weights.

Tracks with an audio file are embedded by the audio tower (the centre 10 s, mono, resampled
to the feature extractor's rate so that no random cropping enters); the query parts are
embedded by the text tower and combined with the audio vectors of tracks already in the
conversation exactly like the dense baseline. Tracks without audio score -1.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from talkplay.data.dataset import Dataset
from talkplay.data.errors import DataError
from talkplay.data.schema import Message
from talkplay.evaluate.baselines.common import BaselineOptions, query_parts, top_k
from talkplay.evaluate.baselines.dense import weighted_query
from talkplay.evaluate.baselines.encoders import cached_matrix, unit_rows
from talkplay.recommend.protocol import Recommendation

log = logging.getLogger(__name__)
CLIP_SECONDS = 10.0


def load_clip(path: Path, rate: int, seconds: float = CLIP_SECONDS) -> np.ndarray:
    """The centre ``seconds`` of an audio file, mono float32 at ``rate`` Hz."""
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for unreadable files
        raise DataError(f"cannot read audio: {e}", file=str(path), field="tracks.audio") from e
    wav = wav.mean(axis=1)
    if sr != rate:
        g = np.gcd(int(sr), int(rate))
        wav = resample_poly(wav, rate // g, int(sr) // g).astype(np.float32)
    n = int(seconds * rate)
    if len(wav) > n:
        start = (len(wav) - n) // 2
        wav = wav[start:start + n]
    return wav


class HFClapRecommender:
    name = "clap"

    def __init__(self, model, tokenizer, ids: list[str], audio_vectors: np.ndarray,
                 has_audio: np.ndarray, options: BaselineOptions):
        self.model, self.tokenizer = model, tokenizer
        self.ids = ids
        self.vectors = unit_rows(audio_vectors)  # [n_items, d], zero rows = no audio
        self.has_audio = has_audio
        self.row_of = {t: i for i, t in enumerate(ids)}
        self.options = options
        self.memo: dict[str, np.ndarray] = {}
        self.description = f"CLAP {options.clap_model}; {int(has_audio.sum())}/{len(ids)} tracks with audio"

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        new = [t for t in dict.fromkeys(texts) if t not in self.memo]
        for start in range(0, len(new), self.options.batch_size):
            chunk = new[start:start + self.options.batch_size]
            enc = self.tokenizer(chunk, padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                out = self.model.get_text_features(**enc.to(self.model.device))
            out = getattr(out, "pooler_output", out)  # [n, d]
            self.memo.update(zip(chunk, unit_rows(out.cpu().numpy()), strict=True))
        return np.stack([self.memo[t] for t in texts])

    def prepare(self, histories: list[list[Message]]) -> None:
        """Encode every user text of the coming queries in batches (see ``evaluate.run``)."""
        self.embed_texts([m.content for h in histories for m in h
                          if m.role == "user" and m.content.strip()])

    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        parts = query_parts(history, decay=self.options.decay,
                            track_weight=self.options.track_weight)
        q = weighted_query(parts, self.embed_texts, self.vectors, self.row_of)
        scores = np.where(self.has_audio, self.vectors @ q, -1.0)
        return top_k(scores, self.ids, k, exclude)


def _audio_path(root: Path | None, audio: str) -> Path:
    p = Path(audio)
    return p if p.is_absolute() or root is None else root / p


def build_hf_clap(ds: Dataset, options: BaselineOptions) -> HFClapRecommender:
    """Load ``options.clap_model`` with transformers and embed every track with audio (cached).

    Raises:
        DataError: the model cannot be loaded (e.g. weights not available offline).
    """
    import torch
    from transformers import AutoFeatureExtractor, AutoTokenizer, ClapModel

    name = options.clap_model
    try:
        model = ClapModel.from_pretrained(name).to(options.device).eval()
        tokenizer = AutoTokenizer.from_pretrained(name)
        extractor = AutoFeatureExtractor.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot load CLAP model {name!r} ({e}); install its weights or use "
                        "clap_model='tagclap'", field="clap_model") from e
    ids = [t.id for t in ds.tracks]
    with_audio = [(i, t) for i, t in enumerate(ds.tracks) if t.audio]
    has_audio = np.zeros(len(ids), bool)
    has_audio[[i for i, _ in with_audio]] = True
    rate = int(extractor.sampling_rate)

    def compute() -> np.ndarray:
        dim = model.config.projection_dim
        mat = np.zeros((len(ids), dim), np.float32)
        for start in range(0, len(with_audio), options.batch_size):
            chunk = with_audio[start:start + options.batch_size]
            clips = [load_clip(_audio_path(ds.root, t.audio), rate) for _, t in chunk]
            # Clips are at most CLIP_SECONDS long, so neither truncation mode crops at random.
            fusion = bool(getattr(model.config.audio_config, "enable_fusion", False))
            feats = extractor(clips, sampling_rate=rate, return_tensors="pt",
                              truncation="fusion" if fusion else "rand_trunc")
            with torch.no_grad():
                out = model.get_audio_features(**{k: v.to(options.device) for k, v in feats.items()})
            out = getattr(out, "pooler_output", out)
            mat[[i for i, _ in chunk]] = out.cpu().numpy()
        return mat

    cache = options.cache_dir or (ds.root / "cache" if ds.root else None)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[-40:]
    keys = [name, *(t.audio or "" for t in ds.tracks)]
    vectors = cached_matrix(cache, f"clap-{slug}", keys, ids, compute)
    return HFClapRecommender(model, tokenizer, ids, vectors, has_audio, options)
