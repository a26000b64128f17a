"""Weights for CPU inference: int8 dynamic quantisation of a loaded model's linear layers.

Decoding a reply is bound by reading the weights once per token (SmolLM2's 135M parameters are
540 MB in float32). ``quantize(model, "int8")`` replaces every ``nn.Linear`` by PyTorch's
dynamically quantised int8 linear (weights int8 per tensor, activations quantised on the fly;
fbgemm kernels on x86): about 2.7x faster per reply token on one thread of the development
machine (``benchmarks/recommend_latency.py --quantize int8``). Scores move, and a beam search's
first track with them: ``benchmarks/quantize_quality.py`` measures the loss on a valid split.
The recommender's "int8-reply" keeps the float model for ranking and quantises a copy that only
writes the reply. CPU only; training always uses the float weights.
"""

from __future__ import annotations

import warnings

import torch

QUANTIZE = ("none", "int8", "int8-reply")
"""none: float weights; int8: every linear layer int8 (rankings move: on the quickstart world's
valid split, MRR 0.097 -> 0.081 and the same first track in 62% of targets); int8-reply: only
the reply is written by an int8 copy of the model, so rankings stay exactly the float model's."""


def quantize(model: torch.nn.Module, method: str | None) -> torch.nn.Module:
    """``model`` with its linear layers quantised per ``method`` ("none" or None: unchanged;
    "int8": dynamic int8, in place). "int8-reply" is the recommender's business (it quantises a
    copy for replies) and is refused here.

    Raises:
        ValueError: an unknown method, or int8 for a model that is not on the CPU.
    """
    if method in (None, "none"):
        return model
    if method != "int8":
        raise ValueError(f"unknown quantization {method!r}; expected one of {QUANTIZE}")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"int8 quantization runs on the CPU only; the model is on {device}")
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao,
        warnings.simplefilter("ignore")  # which this pinned torch does not need for CPU int8
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


__all__ = ["QUANTIZE", "quantize"]
