"""Weights for CPU inference: int8 dynamic quantisation of a loaded model's linear layers.

Decoding a reply is bound by reading the weights once per token (SmolLM2's 135M parameters are
540 MB in float32). ``quantize(model, "int8")`` replaces every ``nn.Linear`` by PyTorch's
dynamically quantised int8 linear (weights int8 per tensor, activations quantised on the fly;
fbgemm kernels on x86): about 2.7x faster per reply token on one thread of the development
machine (``benchmarks/recommend_latency.py --quantize int8``). Scores move a little, so rankings
can differ from the float32 model's: measure it on your valid split before serving it
(``talkplay evaluate --quantize int8``). CPU only; training always uses the float weights.
"""

from __future__ import annotations

import warnings

import torch

QUANTIZE = ("none", "int8")


def quantize(model: torch.nn.Module, method: str | None) -> torch.nn.Module:
    """``model`` with its linear layers quantised per ``method`` ("none" or None: unchanged;
    "int8": dynamic int8, in place).

    Raises:
        ValueError: an unknown method, or int8 for a model that is not on the CPU.
    """
    if method in (None, "none"):
        return model
    if method not in QUANTIZE:
        raise ValueError(f"unknown quantization {method!r}; expected one of {QUANTIZE}")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"int8 quantization runs on the CPU only; the model is on {device}")
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao,
        warnings.simplefilter("ignore")  # which this pinned torch does not need for CPU int8
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


__all__ = ["QUANTIZE", "quantize"]
