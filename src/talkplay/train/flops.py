"""Model FLOPs utilisation (MFU): the training FLOPs a step needs per second over the device's
peak.

FLOPs per trained token follow torchtitan's estimate: 6 x the parameters that take part in a
matmul (all but the input embedding lookup; a tied output projection counts), forward and
backward, plus 12 x layers x heads x head dim x sequence length (attention scores and values).
Our loop sends only labelled positions through the LM head, so for short labelled spans this
overstates the work a little. The peak is the device's dense bf16 figure from its data sheet
(``PEAK_TFLOPS``, matched on the CUDA device name; ``$TALKPLAY_PEAK_TFLOPS`` overrides it);
for a CPU there is none and MFU is not reported.
"""

from __future__ import annotations

import os

import torch

PEAK_TFLOPS = {"H200": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4,
               "A100": 312.0, "L40S": 362.1, "A10G": 70.0, "L4": 121.0}
"""Dense bf16 TFLOP/s per GPU, the first name found in the device's name wins (longest first)."""


def peak_flops(device: torch.device | str) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None when unknown (CPUs, unlisted GPUs)."""
    if os.environ.get("TALKPLAY_PEAK_TFLOPS"):
        return float(os.environ["TALKPLAY_PEAK_TFLOPS"]) * 1e12
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_TFLOPS[key] * 1e12
    return None


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token of a Hugging Face causal LM at ``seq_len`` tokens per sequence."""
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())  # a tied matrix counts once
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if outputs is None or outputs.weight is not inputs.weight:  # the lookup is no matmul
        params -= inputs.weight.numel()
    layers, heads = cfg.num_hidden_layers, cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return 6.0 * params + 12.0 * layers * heads * head_dim * seq_len


__all__ = ["PEAK_TFLOPS", "flops_per_token", "peak_flops"]
