"""Weights for CPU inference: bfloat16, or int8 dynamic quantisation of the linear layers.

A chat turn has two costs. Ranking (the prompt's prefill and the 20-beam search) is bound by
arithmetic: ``quantize(model, "bf16")`` casts the weights to bfloat16, which runs about 1.7x
faster on CPUs with bfloat16 matrix units (AVX512-BF16 or AMX; ``cpu_has_bf16``) and barely
moves the scores (the model was trained under bf16 autocast there). Writing the reply is bound
by reading the weights once per token (SmolLM2's 135M parameters are 540 MB in float32), which
bfloat16 does not speed up here but int8 does: ``quantize(model, "int8")`` replaces every
``nn.Linear`` by PyTorch's dynamically quantised int8 linear (weights int8 per tensor,
activations quantised on the fly; fbgemm kernels on x86), about 2.7x faster per reply token.
int8 rankings move, though, so the recommender's "int8-reply" and "bf16-int8-reply" rank with
the float32 or bfloat16 model and only write the reply with an int8 copy.
``benchmarks/quantize_quality.py`` measures the ranking cost on a valid split,
``benchmarks/recommend_latency.py --quantize`` the time. CPU only for int8; training always uses
the float weights.
"""

from __future__ import annotations

import warnings

import torch

QUANTIZE = ("none", "int8", "int8-reply", "bf16", "bf16-int8-reply")
"""What ranks and what writes the reply. none: float32 weights; int8: every linear layer int8
(rankings move: on the quickstart world's valid split, MRR 0.075 -> 0.069 and the same first
track in 66% of targets); int8-reply: float32 ranks (rankings exactly the float model's), an
int8 copy writes the reply; bf16: bfloat16 weights (same split: MRR 0.0747 -> 0.0748, paired
bootstrap [-0.0021, +0.0025], the same first track in 96% of targets, ranking 0.61x the time);
bf16-int8-reply: bfloat16 ranks, an int8 copy writes the reply (the fastest CPU chat turn)."""


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 matrix units (AMX tiles or AVX512-BF16), where bfloat16
    inference and bf16 autocast training are faster than float32."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def quantize(model: torch.nn.Module, method: str | None) -> torch.nn.Module:
    """``model`` with its weights converted per ``method``, in place ("none" or None: unchanged;
    "bf16": bfloat16 weights, any device; "int8": dynamic int8 linear layers, CPU). The
    "...-int8-reply" methods are the recommender's business (it quantises a copy for replies)
    and are refused here.

    Raises:
        ValueError: an unknown method, or int8 for a model that is not on the CPU.
    """
    if method in (None, "none"):
        return model
    if method == "bf16":
        return model.to(torch.bfloat16)
    if method != "int8":
        raise ValueError(f"unknown quantization {method!r}; expected one of {QUANTIZE}")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"int8 quantization runs on the CPU only; the model is on {device}")
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao,
        warnings.simplefilter("ignore")  # which this pinned torch does not need for CPU int8
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


__all__ = ["QUANTIZE", "cpu_has_bf16", "quantize"]
