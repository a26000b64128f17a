"""Encoders by name: a plain dict of builder functions, one per encoder.

``EmbedConfig.encoders`` maps each modality to a name here. For the text modalities a name
that is not in ``ENCODERS`` is taken as a sentence-transformers model name or local path
(e.g. ``nvidia/NV-Embed-v2`` for users who have it). Builders import their heavy
dependencies inside, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from talkplay.config import EmbedConfig

TEXT_MODALITIES: tuple[str, ...] = ("semantic", "metadata", "lyrics")
CONTENT_MODALITIES: tuple[str, ...] = ("semantic", "metadata", "lyrics", "audio")


def _item2vec(cfg: EmbedConfig) -> Any:
    from talkplay.embed.item2vec import Item2Vec

    return Item2Vec(dim=cfg.item2vec_dim, window=cfg.item2vec_window,
                    epochs=cfg.item2vec_epochs, min_count=cfg.item2vec_min_count, seed=cfg.seed)


def _minilm(cfg: EmbedConfig) -> Any:
    from talkplay.embed.text import MINILM, TextEncoder

    return TextEncoder(MINILM, device=cfg.device)


def _musicnn(cfg: EmbedConfig) -> Any:
    # Lazy: the audio port (talkplay.embed.musicnn) is only needed when audio is embedded.
    from talkplay.embed.musicnn import MusicnnEncoder
    from talkplay.embed.text import resolve_device

    return MusicnnEncoder(model="MSD_musicnn", device=resolve_device(cfg.device))


ENCODERS: dict[str, Callable[[EmbedConfig], Any]] = {
    "item2vec": _item2vec,
    "minilm": _minilm,
    "musicnn": _musicnn,
}
"""Encoder name -> builder(EmbedConfig) -> encoder (ItemEncoder, or PlaylistEncoder for item2vec)."""


def build_encoder(modality: str, name: str, cfg: EmbedConfig) -> Any:
    """The encoder ``name`` for ``modality``.

    Args:
        modality: one of the five modalities.
        name: a key of ``ENCODERS``, or (text modalities) a sentence-transformers name/path.
        cfg: embedding config (device, item2vec parameters, ...).
    Returns:
        An object satisfying ``ItemEncoder`` (or ``PlaylistEncoder`` for "playlist").
    Raises:
        ValueError: unknown name for a non-text modality.
    """
    if name in ENCODERS:
        return ENCODERS[name](cfg)
    if modality in TEXT_MODALITIES:
        from talkplay.embed.text import TextEncoder

        return TextEncoder(name, device=cfg.device, trust_remote_code=cfg.trust_remote_code)
    raise ValueError(f"unknown encoder {name!r} for modality {modality!r}; "
                     f"known: {sorted(ENCODERS)}")


def encoder_spec(modality: str, name: str, cfg: EmbedConfig) -> dict:
    """What determines an encoder's output, known without loading it (for fingerprints)."""
    spec: dict = {"encoder": name}
    if modality == "playlist":
        spec.update(dim=cfg.item2vec_dim, window=cfg.item2vec_window,
                    epochs=cfg.item2vec_epochs, min_count=cfg.item2vec_min_count, seed=cfg.seed)
    elif modality in TEXT_MODALITIES:
        # Version of the text recipe (windows at token boundaries, mean-pooled, normalised).
        spec.update(recipe="windows-meanpool-v1", trust_remote_code=cfg.trust_remote_code)
    return spec
