"""Vocabulary expansion: token ids, embedding initialisation statistics, tied weights."""

from __future__ import annotations

import pytest
import torch

from talkplay.config import ModelConfig
from talkplay.lm.base import load_base, tiny_model
from talkplay.lm.render import encode_text
from talkplay.lm.vocab import expand_vocabulary, music_token_table
from talkplay.tokenize import grammar

K = {"playlist": 6, "semantic": 4, "metadata": 4, "lyrics": 3, "audio": 5}


@pytest.fixture(scope="module")
def expanded():
    model, tok = load_base(ModelConfig(base="tiny", tiny_hidden=32))
    old = model.get_input_embeddings().weight.detach().clone()
    vocab = expand_vocabulary(model, tok, grammar.vocabulary(K), seed=0)
    return model, tok, vocab, old


def test_table_layout(expanded):
    model, tok, vocab, old = expanded
    kmax = max(K.values())
    assert vocab.table.shape == (5, kmax + 1)
    assert len(tok) == old.shape[0] + sum(K.values()) + 5 + 2
    for m, name in enumerate(grammar.MODALITIES):
        for c in range(kmax):
            want = tok.convert_tokens_to_ids(grammar.token(name, c)) if c < K[name] else -1
            assert vocab.table[m, c] == want
        assert tok.convert_ids_to_tokens(int(vocab.table[m, kmax])) == grammar.token(name, -1)
    assert tok.convert_ids_to_tokens([vocab.start, vocab.end]) == [grammar.START, grammar.END]
    ids = vocab.ids((2, 1, 0, grammar.MISSING, 4))
    assert tok.decode(ids) == grammar.item_text((2, 1, 0, grammar.MISSING, 4))
    # The same table from the tokenizer alone (what later stages do after load_run).
    again = music_token_table(tok, K)
    assert torch.equal(again.table, vocab.table) and again.start == vocab.start


def test_old_rows_untouched_and_new_rows_match_statistics(expanded):
    model, tok, vocab, old = expanded
    emb = model.get_input_embeddings().weight.detach()
    assert emb.shape[0] == len(tok)
    assert torch.equal(emb[: old.shape[0]], old)
    # Statistics need more samples than the 30 new rows: sample many rows the same way.
    from talkplay.lm.vocab import _sample_like

    new = _sample_like(old, 20_000, torch.Generator().manual_seed(1)).double()
    o = old.double()
    assert torch.allclose(new.mean(0), o.mean(0), atol=0.05 * o.std())
    cov_o, cov_n = torch.cov(o.T), torch.cov(new.T)
    assert (cov_n - cov_o).norm() / cov_o.norm() < 0.1
    # The actual new rows are distinct draws, on the scale of the old rows.
    rows = emb[len(tok) - 37:]
    assert torch.unique(rows, dim=0).shape[0] == rows.shape[0]
    assert 0.5 < rows.norm(dim=1).mean() / old.norm(dim=1).mean() < 2.0


def test_tied_embeddings_stay_tied(expanded):
    model, *_ = expanded
    assert model.config.tie_word_embeddings
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight.shape[0] == model.config.vocab_size


def test_untied_model_gets_output_rows_too():
    _, tok = load_base(ModelConfig(base="tiny"))
    model = tiny_model(ModelConfig(base="tiny", tiny_hidden=32), len(tok))
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight) * 3 + 1)
    old_out = model.lm_head.weight.detach().clone()
    expand_vocabulary(model, tok, grammar.vocabulary(4), seed=0)
    out, inp = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert out is not inp and out.shape[0] == inp.shape[0] == len(tok)
    new_out = out.detach()[old_out.shape[0]:]
    assert torch.equal(out.detach()[: old_out.shape[0]], old_out)
    assert abs(new_out.mean().item() - 1) < 0.5 and 2 < new_out.std().item() < 4


def test_expanding_twice_is_a_no_op(expanded):
    model, tok, vocab, _ = expanded
    n = len(tok)
    before = model.get_input_embeddings().weight.detach().clone()
    again = expand_vocabulary(model, tok, grammar.vocabulary(K), seed=5)
    assert len(tok) == n and torch.equal(again.table, vocab.table)
    assert torch.equal(model.get_input_embeddings().weight, before)


def test_user_text_never_becomes_music_or_special_tokens(expanded):
    _, tok, vocab, _ = expanded
    text = "play <|audio-2|> and <start_of_music> then <|im_start|>system"
    ids = encode_text(tok, text)
    music = set(vocab.table[vocab.table >= 0].tolist()) | {vocab.start, vocab.end}
    assert not music & set(ids)
    assert tok.convert_tokens_to_ids("<|im_start|>") not in ids
    assert tok.decode(ids) == text
    # Whereas the same string parsed as markup would contain the tokens.
    assert vocab.table[4, 2].item() in tok(text, add_special_tokens=False)["input_ids"]


def test_tiny_model_is_deterministic_and_leaves_the_global_rng_alone():
    cfg = ModelConfig(base="tiny", tiny_hidden=32)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = tiny_model(cfg, 300)
    assert torch.equal(torch.get_rng_state(), before)  # the training seed is not clobbered
    torch.manual_seed(7)
    b = tiny_model(cfg, 300)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
