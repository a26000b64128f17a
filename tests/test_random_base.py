"""``random:SHAPE`` bases: published model shapes with random weights, for throughput benchmarks."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from talkplay.config import ModelConfig
from talkplay.lm.base import SHAPES, load_base


def test_the_1b_shape_has_llama_3_2_1b_parameter_count():
    with torch.device("meta"):  # no memory: only the shapes of the parameters
        model = LlamaForCausalLM(LlamaConfig(**SHAPES["llama-3.2-1b"]))
    assert sum(p.numel() for p in model.parameters()) == 1_235_814_400  # Llama-3.2-1B's


def test_a_random_base_loads_with_the_smollm2_tokenizer_and_the_same_weights_every_time():
    model, tok = load_base(ModelConfig(base="random:smollm2-135m"))
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # SmolLM2-135M's
    assert model.config.num_hidden_layers == 30 and tok.chat_template
    torch.manual_seed(123)
    again, _ = load_base(ModelConfig(base="random:smollm2-135m"))
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight,
                       again.model.layers[0].mlp.up_proj.weight)


def test_an_unknown_shape_names_the_known_ones():
    with pytest.raises(ValueError, match="random:llama-3.2-1b, random:smollm2-135m"):
        load_base(ModelConfig(base="random:llama-70b"))
