"""Fine-tuning the dense retriever (``talkplay fit-retriever``): that it learns a request-to-track
mapping the packaged encoder cannot know, keeps its best validation epoch, reads no test
conversation, and that dense retrieval and the hybrid's saved weights follow the encoder's
weights (not its folder name)."""

from __future__ import annotations

import json

import pytest

from talkplay.data.dataset import Dataset
from talkplay.data.errors import DataError
from talkplay.data.schema import Conversation, Message, Track
from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
from talkplay.evaluate.baselines.encoders import load_text_encoder, weights_fingerprint
from talkplay.evaluate.baselines.retriever_fit import (
    FIT_FILE,
    RetrieverFitConfig,
    fit_retriever,
    training_pairs,
    valid_mrr,
)
from talkplay.evaluate.protocols import build_targets

pytestmark = pytest.mark.slow  # the packaged MiniLM is trained

# Made-up request words and the made-up genre of the tracks they ask for: no pretrained
# encoder links "zorblax" to "quuxian", so only the training conversations can teach it.
CODES = {"zorblax": "quuxian", "vemtrill": "oshpodar", "klandurf": "yibbeck", "snorvic": "trelmaw"}


def _world(tmp_path, n_train=8, n_valid=3, n_test=3) -> Dataset:
    tracks, convs = [], []
    for g, (word, genre) in enumerate(CODES.items()):
        ids = [f"{genre}{i}" for i in range(3)]
        tracks += [Track(tid, f"Song {g * 3 + i}", [f"Band {g * 3 + i}"], tags=[genre])
                   for i, tid in enumerate(ids)]
        for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
            for c in range(n):
                convs.append(Conversation(f"{split}-{word}-{c}", [
                    Message("user", f"play me some {word} please"),
                    Message("music", ids[c % 3])], split=split))
    return Dataset(tracks=tracks, conversations=convs, root=tmp_path / "data")


def test_the_fit_learns_what_the_base_encoder_cannot_and_keeps_the_best_epoch(tmp_path):
    ds = _world(tmp_path)
    cfg = RetrieverFitConfig(max_epochs=3, patience=3, lr=2e-4, batch_size=8, positives=3)
    rec = fit_retriever(ds, tmp_path / "retriever", cfg)
    base, best = rec["valid_mrr_base"], rec["valid_mrr"]
    # The three tracks of a genre are indistinguishable, so the ceiling is the gold ranked
    # first, second or third equally often: (1 + 1/2 + 1/3) / 3 = 0.611.
    assert base < 0.45 and best > 0.6, rec["history"]
    assert best == max(m for _, m in rec["history"]) and rec["best_epoch"] > 0
    saved = json.loads((tmp_path / "retriever" / FIT_FILE).read_text())
    assert saved["valid_mrr"] == best and saved["pairs"] == len(CODES) * 8
    # The saved folder is the best epoch's encoder: it ranks valid as the record says.
    model = load_text_encoder(str(tmp_path / "retriever"))
    from talkplay.evaluate.protocols import cluster_map

    again = valid_mrr(model, ds, build_targets(ds, "paper", split="valid"), cluster_map(ds),
                      BaselineOptions(), 8)
    assert again == pytest.approx(best, abs=2e-3)
    # ... and `dense` uses it through --text-model, cached under the folder's weights.
    dense = SYSTEMS["dense"](ds, BaselineOptions(text_model=str(tmp_path / "retriever")))
    top = dense.recommend([Message("user", "some klandurf now")], k=3)
    assert {s.track_id for s in top.tracks} == {f"yibbeck{i}" for i in range(3)}


def _interrupt_at_validation(monkeypatch, n: int):
    """Make the fit's ``n``-th ranking of the valid split (the base's is the first) raise
    KeyboardInterrupt, as a user's Ctrl-C would."""
    from talkplay.evaluate.baselines import retriever_fit

    calls = []
    real = retriever_fit.valid_mrr

    def interrupted(*args):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(retriever_fit, "valid_mrr", interrupted)
    return retriever_fit


def test_an_interrupted_fit_leaves_the_best_encoder_so_far(tmp_path, monkeypatch):
    ds = _world(tmp_path, n_train=2, n_valid=1)
    _interrupt_at_validation(monkeypatch, 2)  # after the first epoch
    with pytest.raises(KeyboardInterrupt):
        fit_retriever(ds, tmp_path / "out", RetrieverFitConfig(max_epochs=3, batch_size=4))
    saved = json.loads((tmp_path / "out" / FIT_FILE).read_text())
    assert saved["finished"] is False and saved["best_epoch"] == 0
    assert load_text_encoder(str(tmp_path / "out")) is not None  # a whole, loadable folder
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_an_epoch_without_a_gain_is_on_record_before_the_fit_ends(tmp_path, monkeypatch,
                                                                   caplog):
    ds = _world(tmp_path, n_train=4, n_valid=1)
    retriever_fit = _interrupt_at_validation(monkeypatch, 3)  # after the second epoch
    monkeypatch.setattr(retriever_fit, "LOG_EVERY", 1)
    # lr 0: the first epoch cannot beat the base encoder, so the folder keeps epoch 0.
    with caplog.at_level("INFO", logger=retriever_fit.__name__), \
            pytest.raises(KeyboardInterrupt):
        fit_retriever(ds, tmp_path / "out",
                      RetrieverFitConfig(max_epochs=3, patience=3, lr=0.0, batch_size=4))
    saved = json.loads((tmp_path / "out" / FIT_FILE).read_text())
    assert saved["finished"] is False and saved["best_epoch"] == 0
    assert [e for e, _ in saved["history"]] == [0, 1] and len(saved["train_loss"]) == 1
    progress = [r.getMessage() for r in caplog.records if "batch 1/" in r.getMessage()]
    assert progress and "s a batch" in progress[0] and "left in the epoch" in progress[0]


def test_pairs_come_from_train_only_and_each_anchor_once_per_conversation():
    tracks = [Track(f"t{i}", f"Song {i}", ["A"]) for i in range(6)]
    conv = Conversation("c", [Message("user", "start"), Message("music", "t0"),
                              Message("user", "more"), Message("music", "t1"),
                              Message("music", "t2", feedback=None)], split="train")
    test = Conversation("x", [Message("user", "secret test words"), Message("music", "t5")],
                        split="test")
    ds = Dataset(tracks=tracks, conversations=[conv, test])
    pairs = training_pairs(ds, build_targets(ds, "paper", split="train"))
    anchors = [p.anchor for p in pairs]
    assert "secret test words" not in anchors
    assert len(anchors) == len(set(anchors))  # "start" and t0's text appear in later targets too
    assert anchors[0] == "start" and pairs[0].gold == ["t0"]
    assert any(a.startswith("Song 0") for a in anchors)  # history tracks are anchors too


def test_no_validation_split_is_a_clear_error(tmp_path):
    ds = _world(tmp_path, n_valid=0)
    with pytest.raises(DataError, match="validation split"):
        fit_retriever(ds, tmp_path / "out", RetrieverFitConfig(max_epochs=1))
    assert not (tmp_path / "out").exists()


def test_weights_fingerprint_follows_the_weights_not_the_name(tmp_path):
    assert weights_fingerprint("minilm") == "minilm"
    folder = tmp_path / "enc"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="not a sentence-transformers folder"):
        weights_fingerprint(str(folder))
    (folder / "model.safetensors").write_bytes(b"\x00" * 16)
    (folder / FIT_FILE).write_text("{}")
    first = weights_fingerprint(str(folder))
    (folder / FIT_FILE).write_text('{"other": 1}')  # the fit's record is not the model
    assert weights_fingerprint(str(folder)) == first
    (folder / "model.safetensors").write_bytes(b"\x01" * 16)
    assert weights_fingerprint(str(folder)) != first


def test_hybrid_weights_fit_with_one_encoder_are_stale_with_another(tmp_path):
    from talkplay.evaluate.hybrid import (
        HybridConfig,
        StaleFit,
        fitted_text_model,
        load_config,
        save_config,
    )

    run = tmp_path / "run"
    run.mkdir()
    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "model.safetensors").write_bytes(b"\x00" * 16)
    cfg = HybridConfig(weights={"bm25": 1.0, "dense": 2.0})
    save_config(run, "talkplay-hybrid", cfg, str(enc))
    loaded = load_config(run, "talkplay-hybrid")  # serve: the encoder it was fit with
    assert fitted_text_model(loaded) == str(enc.resolve())
    assert load_config(run, "talkplay-hybrid", str(enc)).weights == cfg.weights
    with pytest.raises(StaleFit, match="dense retriever"):
        load_config(run, "talkplay-hybrid", "minilm")
    (enc / "model.safetensors").write_bytes(b"\x01" * 16)  # fine-tuned again in place
    with pytest.raises(StaleFit, match="dense retriever"):
        load_config(run, "talkplay-hybrid")
    for p in enc.iterdir():
        p.unlink()
    enc.rmdir()
    with pytest.raises(DataError, match="is gone"):
        load_config(run, "talkplay-hybrid")
    # Entries saved before the encoder was recorded were fit with the default.
    data = json.loads((run / "hybrid.json").read_text())
    for k in ("text_model", "text_model_id"):
        del data["talkplay-hybrid"]["fitted"][k]
    (run / "hybrid.json").write_text(json.dumps(data))
    assert fitted_text_model(load_config(run, "talkplay-hybrid")) == "minilm"
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"\x02" * 16)
    with pytest.raises(StaleFit):
        load_config(run, "talkplay-hybrid", str(other))


def test_cli_fit_retriever_reports_and_refuses_bad_data(tmp_path):
    from typer.testing import CliRunner

    from talkplay.cli import app
    from talkplay.data.dataset import write_dataset

    ds = _world(tmp_path, n_valid=0)
    write_dataset(tmp_path / "data", ds, source="test", split_rule="given")
    res = CliRunner().invoke(app, ["fit-retriever", "--data", str(tmp_path / "data"),
                                   "--max-epochs", "1"])
    assert res.exit_code == 2 and "validation split" in res.output, res.output
    assert not (tmp_path / "data" / "retriever").exists()
