"""Model FLOPs utilisation (MFU): the training FLOPs a step needs per second over the device's
peak.

FLOPs follow torchtitan's estimate: 6 x the parameters that take part in a matmul (all but the
input embedding lookup; a tied output projection counts), forward and backward, plus 12 x
layers x heads x head dim x sequence length per token (attention scores and values).
``flops_per_token`` is that textbook figure for full sequences. ``TrainFlops`` counts what one
of our steps really computes and no more: the body for real (non-padding) tokens, attention
over each sequence's own length, and the output projection only at the positions our loop
sends through it (labelled ones; user text needs no logits), so skipped work never inflates the
MFU. The peak is the device's dense bf16 figure from its data sheet (``PEAK_TFLOPS``, matched
on the CUDA device name; ``$TALKPLAY_PEAK_TFLOPS`` overrides it); for a CPU there is none and
MFU is not reported.
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


def _matmul_params(model: torch.nn.Module) -> tuple[int, int]:
    """(parameters in the body's matmuls, parameters of the output projection)."""
    params = sum(p.numel() for p in model.parameters())  # a tied matrix counts once
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    head = outputs.weight.numel() if outputs is not None else 0
    params -= inputs.weight.numel()  # the lookup is no matmul
    if outputs is not None and outputs.weight is not inputs.weight:
        params -= head
    return params, head


def _attention_width(model: torch.nn.Module) -> int:
    cfg = model.config
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return cfg.num_hidden_layers * heads * head_dim


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token of a Hugging Face causal LM at ``seq_len`` tokens per sequence,
    every position through the output projection (the textbook figure)."""
    body, head = _matmul_params(model)
    return 6.0 * (body + head) + 12.0 * _attention_width(model) * seq_len


class TrainFlops:
    """The training FLOPs of micro-batches as our loop computes them."""

    def __init__(self, model: torch.nn.Module):
        self.body, self.head = _matmul_params(model)
        self.attention = _attention_width(model)

    def step(self, lengths: torch.Tensor, head_positions: int) -> float:
        """FLOPs of one micro-batch: ``lengths`` [B] real tokens per sequence; ``head_positions``
        the positions of real tokens that went through the output projection."""
        lengths = lengths.double()
        return (6.0 * self.body * float(lengths.sum()) + 6.0 * self.head * head_positions
                + 12.0 * self.attention * float((lengths * lengths).sum()))


__all__ = ["PEAK_TFLOPS", "TrainFlops", "flops_per_token", "peak_flops"]
