"""TalkPlay: conversational music recommendation by generating multimodal music tokens."""

__version__ = "0.1.0"
