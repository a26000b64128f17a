"""Item embeddings, one encoder per modality.

``ENCODERS`` (name -> builder) and ``ItemEncoder`` are the seams; ``build_embeddings`` turns a
dataset directory into ``DIR/embeddings/`` and ``load_modality`` reads one modality back.
"""

from talkplay.embed.build import ORDER, ModalityReport, build_embeddings
from talkplay.embed.protocol import AudioTagger, ItemEncoder, PlaylistEncoder
from talkplay.embed.registry import ENCODERS, build_encoder
from talkplay.embed.store import load_modality

__all__ = ["ENCODERS", "ORDER", "AudioTagger", "ItemEncoder", "ModalityReport",
           "PlaylistEncoder", "build_embeddings", "build_encoder", "load_modality"]
