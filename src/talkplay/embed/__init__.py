"""Item embeddings, one encoder per modality.

``ENCODERS`` (name -> kind and builder) and ``ItemEncoder`` are the seams; ``build_embeddings`` turns a
dataset directory into ``DIR/embeddings/`` and ``load_modality`` reads one modality back.
"""

from talkplay.embed.build import ORDER, ModalityReport, build_embeddings
from talkplay.embed.protocol import AudioTagger, ItemEncoder, PlaylistEncoder
from talkplay.embed.registry import ENCODERS, Entry, build_encoder, check_encoder
from talkplay.embed.store import load_modality

__all__ = ["ENCODERS", "ORDER", "AudioTagger", "Entry", "ItemEncoder", "ModalityReport",
           "PlaylistEncoder", "build_embeddings", "build_encoder", "check_encoder",
           "load_modality"]
