"""Training: data stream, a CPU smoke run with its files, resume after SIGKILL, two processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from talkplay.config import profile
from talkplay.lm.checkpoint import load_run
from talkplay.lm.vocab import music_token_table
from talkplay.train.toy import toy_dataset

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return toy_dataset(tmp_path_factory.mktemp("toy") / "data", seed=0)


def tiny(**train) -> object:
    prof = profile("tiny")
    for k, v in train.items():
        setattr(prof.train, k, v)
    return prof


def test_data_stream_is_deterministic_restorable_and_sharded(data):
    from talkplay.data.dataset import read_dataset
    from talkplay.lm.base import load_base
    from talkplay.lm.vocab import expand_vocabulary
    from talkplay.tokenize import grammar
    from talkplay.tokenize.codebook import Codebook
    from talkplay.train.data import PLAYLIST, Renderer, TrainData, build_splits

    prof = tiny()
    model, tok = load_base(prof.model)
    cb = Codebook.load(data / "tokenizer")
    r = Renderer(tok, cb, expand_vocabulary(model, tok, grammar.vocabulary(cb.k)), 256)
    train, valid = build_splits(read_dataset(data), r)
    assert train.stats["conversations"] == 20 and valid.stats["conversations"] == 4
    assert train.playlists and valid.playlists

    def stream(rank=0, world=1, restore=None, n=12):
        d = TrainData(train, r, batch_size=3, playlist_share=0.5, seed=1, world_size=world, rank=rank)
        if restore:
            d.restore(restore)
        return [[s.ids for s in d.next_batch()] for _ in range(n)], d

    a, da = stream()
    assert a == stream()[0]  # same seed, same stream (across epochs: 12 batches > one epoch)
    assert da.epoch >= 1
    tail, _ = stream(restore={"epoch": 0, "index": 5}, n=7)
    assert tail == a[5:]
    r0, r1 = stream(0, 2, n=4)[0], stream(1, 2, n=4)[0]
    assert r0 != r1  # each rank its own shard
    kinds = [s.kind for b in TrainData(train, r, batch_size=3, playlist_share=0.5, seed=1)
             .epoch_batches(0) for s in b]
    assert kinds.count(PLAYLIST) == 10  # share 0.5 of 20 conversation sequences


def test_playlist_samples_are_rendered_when_drawn_with_the_length_they_were_bucketed_by(data):
    """An epoch holds playlist cuts, not rendered sequences (memory by samples, not tokens);
    the length bucketing uses (``Renderer.playlist_length``) is the rendered one, truncation
    included, and the stream equals rendering every cut up front."""
    import numpy as np

    from talkplay.data.dataset import read_dataset
    from talkplay.lm.base import load_base
    from talkplay.lm.vocab import expand_vocabulary
    from talkplay.tokenize import grammar
    from talkplay.tokenize.codebook import Codebook
    from talkplay.train.data import PlaylistCut, Renderer, Sample, TrainData, build_splits, collate

    model, tok = load_base(tiny().model)
    cb = Codebook.load(data / "tokenizer")
    vocab = expand_vocabulary(model, tok, grammar.vocabulary(cb.k))
    rng = np.random.default_rng(0)
    ids = cb.item_ids
    for context in (48, 100, 256, 4096):  # 48: even one input and one target block overflow
        r = Renderer(tok, cb, vocab, context)
        for _ in range(40):
            n = int(rng.integers(2, 60))
            tracks = [ids[int(i)] for i in rng.integers(0, len(ids), n)]
            cut = int(rng.integers(1, n))
            assert r.playlist_length(n, cut) == len(r.playlist(tracks, cut).ids), (context, n, cut)
    r = Renderer(tok, cb, vocab, 256)
    train, _ = build_splits(read_dataset(data), r)
    d = TrainData(train, r, batch_size=3, playlist_share=0.5, seed=1)
    epoch = d.epoch_batches(0)
    cuts = [x for b in epoch for x in b if isinstance(x, PlaylistCut)]
    assert cuts and all(not hasattr(x, "ids") for x in cuts)
    got = [d.next_batch() for _ in range(len(epoch))]
    want = [[r.playlist(train.playlists[x.playlist], x.cut) if isinstance(x, PlaylistCut) else x
             for x in b] for b in epoch]
    for g, w in zip(got, want, strict=True):
        assert all(isinstance(x, Sample) for x in g)
        assert [list(x.ids) for x in g] == [list(x.ids) for x in w]
        assert [x.music for x in g] == [x.music for x in w]
        assert torch.equal(collate(g, 0)["labels"], collate(w, 0)["labels"])


def test_smoke_run_leaves_a_loadable_run_directory(data, tmp_path):
    from talkplay.train.loop import train

    run = tmp_path / "run"
    summary = train(data, run, tiny(max_steps=6, eval_every=3, save_every=3))
    assert summary["step"] == 6
    for name in ("model/config.json", "tokenizer/codes.npy", "config.json", "manifest.json",
                 "metrics.jsonl", "curves.png", "checkpoints/last/state.pt", "summary.json"):
        assert (run / name).exists(), name
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == list(range(1, 7))
    assert all(0.5 < x["fill"] <= 1 and x["tokens_per_s"] > 0 for x in rows)
    assert rows[-1]["train_ce"] < rows[0]["train_ce"]
    assert [x["step"] for x in rows if "val_ce" in x] == [3, 6]
    assert summary["best_val_ce"] == min(x["val_ce"] for x in rows if "val_ce" in x)
    model, tok, cb, manifest = load_run(run)
    vocab = music_token_table(tok, cb.k)
    assert manifest["kind"] == "run" and manifest["base"] == "tiny"
    best = min((x for x in rows if "val_ce" in x), key=lambda x: x["val_ce"])
    assert manifest["best_step"] == best["step"] and manifest["best_val_ce"] == best["val_ce"]
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    assert tok.decode(vocab.ids(cb.codes_of("t1"))) == cb.text_of("t1")


def test_a_run_without_trained_weights_says_so(data, tmp_path, caplog):
    from talkplay.train.loop import setup

    run = tmp_path / "run"
    setup(data, run, tiny())  # killed here: RUN/model holds the untrained expanded model
    assert json.loads((run / "manifest.json").read_text())["best_step"] is None
    with caplog.at_level("WARNING", logger="talkplay.lm.checkpoint"):
        load_run(run)
    assert "no trained weights yet" in caplog.text


def test_resume_with_another_model_is_refused_clearly(data, tmp_path):
    from talkplay.train.loop import check_same_model, train

    run = tmp_path / "run"
    train(data, run, tiny(max_steps=1, eval_every=1, save_every=1))
    check_same_model(run, tiny())  # same model: fine
    other = tiny()
    other.model.base = "smollm2"
    with pytest.raises(ValueError, match="'tiny' in the run, 'smollm2' requested.*--fresh"):
        check_same_model(run, other)
    out = subprocess.run([str(BIN / "talkplay"), "train", "--data", str(data), "--run", str(run),
                          "--profile", "tiny", "--base", "smollm2"],
                         capture_output=True, text=True, env=_env())
    assert out.returncode == 2 and "another model" in out.stdout, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_cli_reports_a_training_error_without_a_traceback(data, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from talkplay.cli import app
    from talkplay.train.data import TrainData

    def too_few(self, epoch):  # what a dataset with too few sequences for the processes gives
        raise ValueError("not enough training sequences (1) for 2 process(es)")

    monkeypatch.setattr(TrainData, "epoch_batches", too_few)
    r = CliRunner().invoke(app, ["train", "--data", str(data), "--run", str(tmp_path / "r"),
                                 "--profile", "tiny", "--max-steps", "2"])
    assert r.exit_code == 2 and "not enough training sequences" in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


@pytest.mark.parametrize("flag", ["--eval-every", "--save-every", "--max-steps", "--batch-size",
                                  "--grad-accum", "--lr"])
def test_cli_rejects_zero_for_options_that_must_be_positive(tmp_path, flag):
    from typer.testing import CliRunner

    from talkplay.cli import app

    r = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--run", str(tmp_path / "r"),
                                 flag, "0"])
    assert r.exit_code == 2 and flag in r.output, r.output


def test_self_similarity_term_shapes_the_music_embeddings(data, tmp_path):
    from talkplay.train.loop import train

    sims = {}
    for lam in (0.0, 5.0):
        s = train(data, tmp_path / f"lam{lam}", tiny(max_steps=4, eval_every=4, save_every=4,
                                                     self_sim_lambda=lam))
        sims[lam] = s["last"]["self_sim"]
    assert sims[5.0] < 0.8 * sims[0.0]


def _cli(data: Path, run: Path, *extra: str) -> list[str]:
    return [str(BIN / "talkplay"), "train", "--data", str(data), "--run-dir", str(run),
            "--profile", "tiny", "--max-steps", "8", "--save-every", "3", "--eval-every", "4",
            *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(data, tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(_cli(data, ref), check=True, env=_env(), capture_output=True)
    proc = subprocess.Popen(_cli(data, cut), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    meta = cut / "checkpoints" / "last" / "meta.json"
    deadline = time.time() + 120
    while not meta.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = json.loads(meta.read_text())["step"]
    assert 3 <= killed_at < 8
    subprocess.run(_cli(data, cut), check=True, env=_env(), capture_output=True)

    def final(run):
        return torch.load(run / "checkpoints/last/state.pt", weights_only=False)["model"]

    a, b = final(ref), final(cut)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    rows = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()]
            for r in (ref, cut)]
    assert [x["step"] for x in rows[1]] == list(range(1, 9))
    for x, y in zip(*rows, strict=True):
        assert x["train_ce"] == pytest.approx(y["train_ce"], rel=1e-5)
        assert ("val_ce" in x) == ("val_ce" in y)
        if "val_ce" in x:
            assert x["val_ce"] == pytest.approx(y["val_ce"], rel=1e-5)


@pytest.mark.slow
def test_two_processes_train_in_step(data, tmp_path):
    if not shutil.which("torchrun", path=str(BIN)):
        pytest.skip("torchrun not installed")
    run = tmp_path / "ddp"
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29517",
           *_cli(data, run, "--max-steps", "4")]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["num_processes"] == 2
    a, b = summary["weights_sha256"]
    assert a == b  # DDP kept the two replicas identical
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [1, 2, 3, 4] and rows[-1]["train_ce"] < rows[0]["train_ce"]

    # The same job launched as two nodes of one process each (torchrun --nnodes 2 --node_rank R
    # --master_addr ...; here both nodes are this machine): the same global ranks, shards and
    # all-reduces, so the same weights, bit for bit, and the same losses.
    from launch import torchrun_nodes

    nodes = tmp_path / "nodes"
    for done in torchrun_nodes(_cli(data, nodes, "--max-steps", "4")):
        assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((nodes / "summary.json").read_text())
    assert two["num_processes"] == 2 and two["weights_sha256"] == [a, a]
    again = [json.loads(x) for x in (nodes / "metrics.jsonl").read_text().splitlines()]
    assert [x["train_ce"] for x in again] == [x["train_ce"] for x in rows]


def test_cli_reports_a_missing_codebook_without_a_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    out = subprocess.run([str(BIN / "talkplay"), "train", "--data", str(tmp_path / "empty"),
                          "--run", str(tmp_path / "r"), "--profile", "tiny"],
                         capture_output=True, text=True, env=_env())
    assert out.returncode == 2 and "talkplay tokenize --data" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    paths = sorted((Path(__file__).parents[1] / "configs" / "accelerate").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"ddp", "fsdp", "deepspeed_zero2"}
    for p in paths:
        cfg = load_config_from_file(str(p))
        assert cfg.num_processes >= 1 and cfg.mixed_precision == "bf16", p


def test_freeze_lower_layers_trains_only_the_top_and_the_embeddings():
    from talkplay.config import ModelConfig
    from talkplay.lm.base import tiny_model
    from talkplay.train.loop import freeze_lower_layers

    model = tiny_model(ModelConfig(base="tiny", tiny_layers=3, tiny_hidden=32), vocab_size=300)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    freeze_lower_layers(model, 1)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ids = torch.randint(0, 300, (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("model.layers.2.") for n in changed)
    assert not any(n.startswith(("model.layers.0.", "model.layers.1.")) for n in changed)
    assert "model.embed_tokens.weight" in changed  # learns through the tied LM head
    assert model.model.layers[0].self_attn.q_proj.weight.grad is None  # no backward down there
    with pytest.raises(ValueError, match="train_top_layers"):
        freeze_lower_layers(model, 4)


def test_schedule_decays_over_the_time_budget_when_it_runs_out_first():
    from talkplay.train.loop import lr_lambda

    # 1000 planned steps, stopped by a time budget: the budget spent drives the decay
    assert lr_lambda(5, 10, 1000, "cosine") == pytest.approx(0.6)  # warm-up is by steps
    assert lr_lambda(50, 10, 1000, "cosine", time_frac=0.0) > 0.99
    assert lr_lambda(50, 10, 1000, "cosine", time_frac=0.5) == pytest.approx(0.55)
    assert lr_lambda(50, 10, 1000, "cosine", time_frac=1.0) == pytest.approx(0.1)
    assert lr_lambda(50, 10, 1000, "linear", time_frac=1.0) == pytest.approx(0.1)
    assert lr_lambda(50, 10, 1000, "constant", time_frac=1.0) == 1.0
    # whichever is further along counts
    assert lr_lambda(1000, 10, 1000, "cosine", time_frac=0.2) == pytest.approx(0.1)


def test_a_time_budgeted_run_ends_at_the_low_end_of_its_schedule(data, tmp_path):
    from talkplay.train.loop import fit, lr_lambda, setup

    prof = tiny(max_steps=10_000, max_minutes=0.08, warmup_steps=1, eval_every=10_000,
                save_every=10_000)
    summary = fit(setup(data, tmp_path / "run", prof, fresh=True))
    assert summary["step"] < 10_000  # the budget stopped it
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows[1:]]  # after the one warm-up step
    assert lrs == sorted(lrs, reverse=True) and len(lrs) >= 2
    # Each step's rate follows the budget spent when the step before it ended (not the
    # 10,000 steps, which would leave it at the peak): between the schedule at the previous
    # row's clock and at its own. A fixed bound on the last rate failed on a loaded machine,
    # where one step is a large share of the 4.8 s budget; and the rate then lagged two steps.
    budget = 60 * prof.train.max_minutes

    def rate(row, shift):  # the schedule at the row's clock moved by ``shift`` s (rounding)
        frac = min(1.0, max(0.0, row["elapsed_s"] + shift) / budget)
        return prof.train.lr * lr_lambda(row["step"], 1, 10_000, prof.train.schedule, frac)

    for before, row in zip(rows[1:-1], rows[2:], strict=True):
        assert rate(row, 0.002) <= row["lr"] <= rate(before, -0.002), (before, row)
    assert rows[-1]["lr"] < 0.99 * prof.train.lr  # decayed by the clock alone
    if rows[-2]["elapsed_s"] > 0.75 * budget:  # the usual case: the rate near the low end
        assert rows[-1]["lr"] < 0.5 * prof.train.lr


def test_precision_setting():
    from talkplay.train.loop import resolve_precision

    assert resolve_precision("fp32") == "no"
    assert resolve_precision("auto") in ("bf16", "no")
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("fp16")
