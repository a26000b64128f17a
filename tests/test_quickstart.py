"""CPU smoke test of the main entry point: the whole pipeline on the tiny profile, then a rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from talkplay.cli import app
from talkplay.cli.quickstart import (
    MIN_TRAIN_MINUTES,
    QUICKSTART_SETTINGS,
    TRAIN_OVERHEAD_S,
    _invoke,
    eval_estimate,
    model_conversations,
    recorded_stage_args,
    same_args,
    serve_args,
    train_minutes,
)
from talkplay.io import write_json


@pytest.mark.slow
def test_quickstart_tiny_runs_every_stage_then_reuses_them(tmp_path, monkeypatch):
    work = tmp_path / "qs"
    runner = CliRunner()
    first = runner.invoke(app, ["quickstart", "--profile", "tiny", "--work", str(work), "--no-serve"])
    assert first.exit_code == 0, first.output
    summary = json.loads((work / "quickstart.json").read_text())
    assert set(summary["stages_s"]) == {"world", "conversations", "embed", "tokenize", "train",
                                        "evaluate"}
    assert all(summary["stages_s"][s] > 0 for s in ("world", "train", "evaluate"))
    # The files each stage leaves behind.
    for path in ("world/manifest.json", "world/embeddings/manifest.json",
                 "world/tokenizer/codes.npy", "run/model/config.json", "run/metrics.jsonl",
                 "run/curves.png", "results/results.json", "results/results.md",
                 "results/mrr_by_turn.png", "results/replies.md"):
        assert (work / path).exists(), path
    # Replies are grounded in the chosen track's facts and checked.
    assert json.loads((work / "run" / "config.json").read_text())["train"]["grounded_replies"]
    replies = json.loads((work / "results" / "replies.json").read_text())
    assert replies["talkplay-beam"]["replies"] == 3 and replies["talkplay-beam"]["reply_guard"]
    results = json.loads((work / "results" / "results.json").read_text())
    systems = set(results["systems"])
    for name in ("talkplay-hybrid", "talkplay-beam", "talkplay-paper", "bm25", "dense", "clap",
                 "popularity"):
        assert name in systems
    # The hybrid's weights were fit on the valid split, and the chat serves it.
    hybrid = json.loads((work / "run" / "hybrid.json").read_text())["talkplay-hybrid"]
    assert hybrid["fitted"]["split"] == "valid"
    assert serve_args(work / "run", 8000)[5:7] == ["--system", "talkplay-hybrid"]
    # Training ran for what the whole quickstart's --budget left (the tiny profile's 6 steps
    # end it long before), and the record keeps the cap so that a rerun does not retrain.
    plan = summary["plan"]
    assert plan["probe_s"] > 0 and plan["eval_estimate_s"] >= 0
    assert 0 < plan["train_minutes"] <= 18.0
    trained = json.loads((work / "run" / "config.json").read_text())["train"]
    assert trained["max_minutes"] == plan["train_minutes"]
    assert summary["stage_args"]["train"][summary["stage_args"]["train"].index("--max-minutes") + 1] == "18.0"
    # The whole run's time covers its stages' (each rounded to 0.1 s, so the sum may pass it by
    # up to 0.05 s a stage).
    assert summary["wall_s"] >= summary["total_s"] - 0.05 * len(summary["stages_s"]) > 0

    again = runner.invoke(app, ["quickstart", "--profile", "tiny", "--work", str(work), "--no-serve",
                                "--budget", "5"])
    assert again.exit_code == 0, again.output
    stages = json.loads((work / "quickstart.json").read_text())["stages_s"]
    # Everything but the (fingerprint-cached, seconds-long) embed stage is skipped.
    assert all(stages[s] == 0.0 for s in ("world", "conversations", "tokenize", "train",
                                          "evaluate")), stages
    assert "up to date, skipped" in again.output

    # Changed settings rerun the stage they belong to, and only that one.
    third = runner.invoke(app, ["quickstart", "--profile", "tiny", "--work", str(work), "--no-serve",
                                "--eval-limit", "2"])
    assert third.exit_code == 0, third.output
    stages = json.loads((work / "quickstart.json").read_text())["stages_s"]
    assert stages["evaluate"] > 0 and stages["train"] == 0.0, stages
    assert json.loads((work / "results" / "results.json").read_text())["limit"] == 2

    # The same workspace spelled relative to the current directory is still up to date.
    monkeypatch.chdir(tmp_path)
    fourth = runner.invoke(app, ["quickstart", "--profile", "tiny", "--work", "qs", "--no-serve",
                                 "--eval-limit", "2"])
    assert fourth.exit_code == 0, fourth.output
    stages = json.loads((work / "quickstart.json").read_text())["stages_s"]
    assert all(stages[s] == 0.0 for s in ("world", "conversations", "tokenize", "train",
                                          "evaluate")), stages

    # A budget already spent: training gets its floor and the run says it will overrun.
    fifth = runner.invoke(app, ["quickstart", "--profile", "tiny", "--work", "qs", "--no-serve",
                                "--eval-limit", "2", "--minutes", "17", "--budget", "0.01"])
    assert fifth.exit_code == 0, fifth.output
    assert "leaves no time to train" in fifth.output
    summary = json.loads((work / "quickstart.json").read_text())
    assert summary["stages_s"]["train"] > 0 and summary["plan"]["train_minutes"] == MIN_TRAIN_MINUTES
    assert json.loads((work / "run" / "config.json").read_text())["train"]["max_minutes"] == 2.0


def test_quickstart_rejects_unknown_profile_and_bad_limit(tmp_path):
    out = CliRunner().invoke(app, ["quickstart", "--profile", "huge", "--work", str(tmp_path)])
    assert out.exit_code == 2 and "unknown profile 'huge'" in out.output
    out = CliRunner().invoke(app, ["quickstart", "--profile", "tiny", "--eval-limit", "0",
                                   "--work", str(tmp_path)])
    assert out.exit_code == 2 and "--eval-limit must be at least 1" in out.output
    out = CliRunner().invoke(app, ["quickstart", "--profile", "tiny", "--budget", "-1",
                                   "--work", str(tmp_path)])
    assert out.exit_code == 2 and "--budget must be 0" in out.output


def test_training_gets_what_the_budget_leaves():
    # Plenty of time: the cap. No bound: the cap.
    assert train_minutes(18.0, 60.0, spent_s=300, eval_s=500) == 18.0
    assert train_minutes(18.0, None, spent_s=10_000, eval_s=10_000) == 18.0
    # 28 minutes less 5 spent, 9 for the evaluation and the train stage's own overhead.
    left = (28 * 60 - 300 - 540 - TRAIN_OVERHEAD_S) / 60
    assert train_minutes(18.0, 28.0, spent_s=300, eval_s=540) == round(left, 1) < 18.0
    # A slower machine (more spent, a longer evaluation) trains less.
    assert train_minutes(18.0, 28.0, spent_s=400, eval_s=700) < train_minutes(18.0, 28.0, 300, 540)
    # Nothing left: the floor, never zero or negative.
    assert train_minutes(18.0, 5.0, spent_s=600, eval_s=600) == MIN_TRAIN_MINUTES


def test_the_evaluation_estimate_follows_the_work_and_the_machine():
    small = QUICKSTART_SETTINGS["small"]
    # The hybrid's fit on the valid conversations, then each test one for hybrid and beam.
    assert model_conversations(small, 20) == small["fit_limit"] + 2 * 20
    assert eval_estimate(small, 40, 0.1) > eval_estimate(small, 20, 0.1) > 0
    assert eval_estimate(small, 20, 0.2) == pytest.approx(2 * eval_estimate(small, 20, 0.1))


def test_a_workspace_recorded_with_old_option_names_is_still_up_to_date(tmp_path):
    """Before the rename, tokenize's --clusters was --k: the recorded arguments still match."""
    record = tmp_path / "quickstart.json"
    assert recorded_stage_args(record) == {}
    old = ["tokenize", "--data", "w", "--k", "16", "--k-modality", "playlist=8"]
    write_json(record, {"stage_args": {"tokenize": old, "world": ["data", "synth", "--out", "w"]}})
    stages = recorded_stage_args(record)
    assert stages["tokenize"] == ["tokenize", "--data", "w", *QUICKSTART_SETTINGS["tiny"]["tokenize"]]
    assert stages["world"] == ["data", "synth", "--out", "w"]


def test_the_served_chat_writes_replies_with_an_int8_copy_on_cpu(monkeypatch):
    import torch

    import talkplay.lm.quantize as quantize
    from talkplay.cli.quickstart import serve_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(quantize, "cpu_has_bf16", lambda: False)
    assert serve_args(Path("w/run"), 8000)[-2:] == ["--quantize", "int8-reply"]
    monkeypatch.setattr(quantize, "cpu_has_bf16", lambda: True)
    assert serve_args(Path("w/run"), 8000)[-2:] == ["--quantize", "bf16-int8-reply"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # int8 is CPU only
    assert "--quantize" not in serve_args(Path("w/run"), 8000)


def test_a_stage_that_fails_fails_the_quickstart(tmp_path):
    """A command that fails returns its exit code when run in-process; the quickstart must not
    take it for done (it once went on past `data synth` refusing to overwrite a dataset)."""
    with pytest.raises(RuntimeError, match="exited with code 2"):
        _invoke(["tokenize", "--data", str(tmp_path / "no-such-dataset")])
    _invoke(["data", "synth", "--help"])  # a command that succeeds raises nothing


def test_stage_arguments_compare_paths_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = ["data", "synth", "--out", "work/world", "--tracks", "2000"]
    assert same_args(rel, ["data", "synth", "--out", str(tmp_path / "work" / "world"), "--tracks",
                           "2000"])
    assert not same_args(rel, ["data", "synth", "--out", "work/world", "--tracks", "500"])
    assert not same_args(rel, ["data", "synth", "--out", "other/world", "--tracks", "2000"])
