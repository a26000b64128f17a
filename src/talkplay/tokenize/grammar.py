"""The music-token text, both directions. The only place that knows how tokens are spelled.

An item is five tokens, one per modality in the paper's order, wrapped in two markers::

    <start_of_music><|playlist-12|><|semantic-3|><|metadata-40|><|lyrics-7|><|audio-981|><end_of_music>

A modality an item lacks (no playlist vector for a cold item, no lyrics in CPCD) is written
``<|lyrics-none|>``: an explicit token, never a made-up cluster. In code arrays a missing
modality is ``MISSING`` (-1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

MODALITIES: tuple[str, ...] = ("playlist", "semantic", "metadata", "lyrics", "audio")
"""Modalities in token order (the paper's)."""
LOOKUP_WEIGHTS: tuple[int, ...] = (25, 16, 9, 4, 1)
"""Paper's partial-match weights, aligned with MODALITIES."""
START, END = "<start_of_music>", "<end_of_music>"
MISSING = -1
_TOKEN = re.compile(r"<\|(playlist|semantic|metadata|lyrics|audio)-(none|\d+)\|>")


def token(modality: str, code: int) -> str:
    """``token("audio", 5) == "<|audio-5|>"``; ``token("audio", MISSING) == "<|audio-none|>"``."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    return f"<|{modality}-{'none' if code == MISSING else int(code)}|>"


def item_text(codes: Sequence[int]) -> str:
    """Five codes (MISSING allowed) -> the wrapped music block."""
    if len(codes) != len(MODALITIES):
        raise ValueError(f"expected {len(MODALITIES)} codes, got {len(codes)}")
    return START + "".join(token(m, c) for m, c in zip(MODALITIES, codes, strict=True)) + END


def parse_token(text: str) -> tuple[int, int] | None:
    """``"<|metadata-7|>"`` -> ``(2, 7)`` (modality index, code); anything else -> None."""
    m = _TOKEN.fullmatch(text)
    if not m:
        return None
    return MODALITIES.index(m.group(1)), MISSING if m.group(2) == "none" else int(m.group(2))


def parse_items(text: str) -> list[tuple[int, ...]]:
    """Every well-formed music block in ``text`` -> its five codes. Malformed blocks are skipped."""
    out = []
    for block in re.findall(re.escape(START) + r"(.*?)" + re.escape(END), text):
        toks = _TOKEN.findall(block)
        if [m for m, _ in toks] == list(MODALITIES) and "".join(
            token(m, MISSING if c == "none" else int(c)) for m, c in toks) == block:
            out.append(tuple(MISSING if c == "none" else int(c) for _, c in toks))
    return out


def vocabulary(k: int | Mapping[str, int]) -> list[str]:
    """All music tokens in vocabulary order: per modality codes 0..K-1 then ``none``; markers last.

    Args:
        k: clusters per modality (one int for all, or a mapping modality -> K).
    Returns:
        ``sum(K) + 5 + 2`` token strings.
    """
    ks = {m: k for m in MODALITIES} if isinstance(k, int) else dict(k)
    toks = []
    for m in MODALITIES:
        toks += [token(m, c) for c in range(ks[m])] + [token(m, MISSING)]
    return toks + [START, END]
