"""Encoders by name: a plain dict of (kind, builder) entries, one per encoder.

``EmbedConfig.encoders`` maps each modality to a name here. Every encoder has a kind, and
every modality needs one kind: "playlist" (item2vec, fitted on playlists), "text" (semantic,
metadata, lyrics: strings) or "audio" (file paths); an encoder of another kind is refused
with a clear error instead of, say, embedding audio file paths as text. For the text
modalities a name that is not in ``ENCODERS`` is taken as a sentence-transformers model name
or local path (e.g. ``nvidia/NV-Embed-v2`` for users who have it). Builders import their
heavy dependencies inside, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from talkplay.config import EmbedConfig

TEXT_MODALITIES: tuple[str, ...] = ("semantic", "metadata", "lyrics")
CONTENT_MODALITIES: tuple[str, ...] = ("semantic", "metadata", "lyrics", "audio")
KINDS: tuple[str, ...] = ("playlist", "text", "audio")


@dataclass(frozen=True)
class Entry:
    """A registered encoder: what it embeds and how to build it."""

    kind: str
    """"playlist" (``PlaylistEncoder``), "text" or "audio" (``ItemEncoder``)."""
    build: Callable[[EmbedConfig], Any]


def modality_kind(modality: str) -> str:
    """The encoder kind a modality needs: "playlist", "text" or "audio".

    Raises:
        ValueError: unknown modality.
    """
    if modality in ("playlist", "audio"):
        return modality
    if modality in TEXT_MODALITIES:
        return "text"
    raise ValueError(f"unknown modality {modality!r}; expected playlist, "
                     f"{', '.join(TEXT_MODALITIES)} or audio")


def check_encoder(modality: str, name: str) -> None:
    """Refuse an encoder that does not fit the modality (cheap: nothing is loaded).

    Args:
        modality: one of the five modalities.
        name: a key of ``ENCODERS``, or (text modalities) a sentence-transformers name/path.
    Raises:
        ValueError: unknown modality, an encoder of another kind, or an unknown name for a
            playlist/audio modality; the message lists the encoders that fit.
    """
    kind = modality_kind(modality)
    fits = sorted(n for n, e in ENCODERS.items() if e.kind == kind)
    if name in ENCODERS:
        if ENCODERS[name].kind != kind:
            raise ValueError(f"encoder {name!r} embeds {ENCODERS[name].kind}, but modality "
                             f"{modality!r} needs a {kind} encoder: {', '.join(fits)}")
    elif kind != "text":
        raise ValueError(f"unknown encoder {name!r} for modality {modality!r}; "
                         f"{kind} encoders: {', '.join(fits)}")


def _item2vec(cfg: EmbedConfig) -> Any:
    from talkplay.embed.item2vec import Item2Vec

    return Item2Vec(dim=cfg.item2vec_dim, window=cfg.item2vec_window,
                    epochs=cfg.item2vec_epochs, min_count=cfg.item2vec_min_count, seed=cfg.seed,
                    workers=cfg.item2vec_workers)


def _minilm(cfg: EmbedConfig) -> Any:
    from talkplay.embed.text import MINILM, TextEncoder

    return TextEncoder(MINILM, device=cfg.device)


def _musicnn(cfg: EmbedConfig) -> Any:
    # Lazy: the audio port (talkplay.embed.musicnn) is only needed when audio is embedded.
    from talkplay.embed.musicnn import MusicnnEncoder
    from talkplay.embed.text import resolve_device

    return MusicnnEncoder(model="MSD_musicnn", device=resolve_device(cfg.device))


ENCODERS: dict[str, Entry] = {
    "item2vec": Entry("playlist", _item2vec),
    "minilm": Entry("text", _minilm),
    "musicnn": Entry("audio", _musicnn),
}
"""Encoder name -> Entry(kind, builder(EmbedConfig) -> ItemEncoder or PlaylistEncoder)."""


def build_encoder(modality: str, name: str, cfg: EmbedConfig) -> Any:
    """The encoder ``name`` for ``modality``.

    Args:
        modality: one of the five modalities.
        name: a key of ``ENCODERS``, or (text modalities) a sentence-transformers name/path.
        cfg: embedding config (device, item2vec parameters, ...).
    Returns:
        An object satisfying ``ItemEncoder`` (or ``PlaylistEncoder`` for "playlist").
    Raises:
        ValueError: the encoder does not fit the modality (see ``check_encoder``).
    """
    check_encoder(modality, name)
    if name in ENCODERS:
        return ENCODERS[name].build(cfg)
    from talkplay.embed.text import TextEncoder

    return TextEncoder(name, device=cfg.device, trust_remote_code=cfg.trust_remote_code)


def encoder_spec(modality: str, name: str, cfg: EmbedConfig) -> dict:
    """What determines an encoder's output, known without loading it (for fingerprints)."""
    spec: dict = {"encoder": name}
    if modality == "playlist":
        spec.update(dim=cfg.item2vec_dim, window=cfg.item2vec_window,
                    epochs=cfg.item2vec_epochs, min_count=cfg.item2vec_min_count, seed=cfg.seed)
        if cfg.item2vec_workers != 1:  # absent at 1, so caches built before the option stay valid
            spec["workers"] = cfg.item2vec_workers
    elif modality in TEXT_MODALITIES:
        # Version of the text recipe (windows at token boundaries, mean-pooled, normalised).
        spec.update(recipe="windows-meanpool-v1", trust_remote_code=cfg.trust_remote_code)
    return spec
