"""``talkplay quickstart``: the whole pipeline in one command, each stage skipped when done.

Stages run the same commands a user would type (``talkplay data synth``, ``data
conversations``, ``embed``, ``tokenize``, ``train``, ``evaluate``, ``serve``) in this process,
so their progress bars, tables and errors are the ones documented in the README. A stage whose
output is already there and up to date is skipped; a failing stage is named with its reason.
Stage timings and peak memory go to ``WORK/quickstart.json``. The whole run keeps to
``--budget`` minutes: training gets what the other stages leave, the evaluation's share
estimated from a probe of this machine's speed (``train_minutes``).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.table import Table

from talkplay.cli.app import app, console, fail, quiet_libraries
from talkplay.io import read_json, write_json

FIT_LIMIT = 15
"""Valid conversations the quickstart fits the hybrid's weights on (about 100 targets, 2-3
minutes on two cores; the README's full table fits on 60)."""
QUICKSTART_SETTINGS: dict[str, dict] = {
    # The embedded world and training budget that finish on 2 CPU cores in under 30 minutes.
    # Settings chosen on the VALID split (benchmarks/quickstart_sweep.py, 250 steps, 60 valid
    # conversations, one H200): grounded token init (the paper's Hewitt init reached a third of
    # its MRR in the earlier sweep) and K = 128 for every modality (playlist K 32 / 64 / 128:
    # valid MRR 0.080 / 0.088 / 0.099). The test split is only read for the final table.
    # Replies are grounded in the chosen track's facts (--grounded-replies) and the evaluation
    # checks the first replies' claims (--replies). The evaluation fits talkplay-hybrid (the
    # best mode) on FIT_LIMIT valid conversations, and the chat serves it; it covers 20 test
    # conversations so that the whole run stays under 30 minutes (README: the full test split).
    "small": {
        "world": ["--tracks", "2000", "--artists", "200", "--playlists", "2500", "--scenes", "20",
                  "--seconds", "3"],
        "tokenize": ["--clusters", "128"],
        "train": ["--context-length", "256", "--batch-size", "8", "--lr", "1e-3",
                  "--warmup-steps", "10", "--token-init", "grounded", "--eval-every", "50",
                  "--save-every", "100", "--grounded-replies"],
        "eval_limit": 20,
        "replies": 10,
        "fit_limit": FIT_LIMIT,
        "systems": "talkplay-hybrid,talkplay-beam,bm25,dense,cooc,clap,popularity",
    },
    # Tests and smoke runs: seconds, not a meaningful model.
    "tiny": {
        "world": ["--tracks", "150", "--artists", "20", "--playlists", "160", "--scenes", "4",
                  "--seconds", "3"],
        "tokenize": ["--clusters", "16", "--modality-clusters", "playlist=8"],
        "train": ["--max-steps", "6", "--token-init", "grounded", "--eval-every", "3",
                  "--save-every", "3", "--grounded-replies"],
        "eval_limit": 4,
        "replies": 3,
        "fit_limit": 2,
        "systems": "talkplay-hybrid,talkplay-beam,talkplay-paper,bm25,dense,cooc,clap,popularity",
    },
}
BUDGET_MINUTES = 28.0
"""The default bound on the whole quickstart, world to results: the README's "30 minutes from
the clone" less about 2 for ``setup.sh``. Training gets what the stages before it and the
evaluation leave (``train_minutes``)."""
MIN_TRAIN_MINUTES = 2.0
"""Training never gets less, even when the budget is spent (the run then says it overran)."""
TRAIN_OVERHEAD_S = 60.0
"""Seconds the train stage spends beyond its ``--max-minutes``: loading and converting the
model, the last validation and checkpoint (measured on two cores: 1,136 s for 18 minutes; on
one: 739 s for 11.3)."""
EVAL_PROBES_PER_CONVERSATION = 8.0
"""The evaluation's time per conversation the model ranks (the valid ones the hybrid is fit on
plus the test ones times the model's systems), in units of ``probe_seconds``. Measured on the
development machine (2 cores, 2026-12-07): the small profile's evaluation took 294 s for 55
such conversations with a probe of 0.75 s, 7.1 probes each; 8 leaves a margin."""
PROBE_SHAPE = (8, 96)
"""Batch x tokens of the forward pass ``probe_seconds`` times."""
# Options renamed since an earlier quickstart may have recorded its stage arguments.
RENAMED_OPTIONS = {"--k": "--clusters", "--k-modality": "--modality-clusters"}


def serve_args(run: Path, port: int) -> list[str]:
    """The serve stage: the run's talkplay-hybrid once the evaluate stage fit its weights on
    the valid split (beam mode without them). On a CPU with bfloat16 units (AVX512-BF16 or
    AMX) a bfloat16 copy of the model ranks and an int8 copy writes the reply (``--quantize
    bf16-int8-reply``): a beam-mode turn with a grounded reply takes about 1.4 s on one thread
    instead of 3.1 s (a hybrid turn 1.5-1.7 s), the same first track as the float model in 94%
    of turns; on other CPUs only the reply is int8 (``int8-reply``: the float rankings, about
    2.2 s). GPUs serve the float model."""
    import torch

    from talkplay.evaluate.hybrid import load_config
    from talkplay.lm.quantize import cpu_has_bf16

    args = ["serve", "--run", str(run), "--port", str(port)]
    if load_config(run, "talkplay-hybrid") is not None:
        args += ["--system", "talkplay-hybrid"]  # the best mode, once evaluate fit its weights
    if torch.cuda.is_available():
        return args
    return [*args, "--quantize", "bf16-int8-reply" if cpu_has_bf16() else "int8-reply"]


def probe_seconds(profile_name: str) -> float:
    """Seconds one no-grad forward of the profile's base model over ``PROBE_SHAPE`` tokens
    takes here (best of three after a warm-up; float32, on the device the evaluation uses):
    the unit ``eval_estimate`` counts in, so that a slower machine reserves more time."""
    import torch

    from talkplay.config import profile
    from talkplay.lm.base import load_base

    quiet_libraries()  # no weight-loading bar in the middle of the stages' output
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where the evaluation runs it
    model, _ = load_base(profile(profile_name).model)
    model.to(device).eval()
    ids = torch.randint(0, model.config.vocab_size, PROBE_SHAPE,
                        generator=torch.Generator().manual_seed(0)).to(device)
    best = float("inf")
    with torch.no_grad():
        for i in range(4):
            started = time.perf_counter()
            model(input_ids=ids)
            if device == "cuda":
                torch.cuda.synchronize()
            if i:  # the first call warms up the allocator and kernels
                best = min(best, time.perf_counter() - started)
    return best


def model_conversations(qs: dict, limit: int) -> int:
    """Conversations the evaluation runs the model on: the valid ones the hybrid is fit on,
    and the test ones once for each of the model's systems."""
    systems = [s for s in qs["systems"].split(",") if s.startswith("talkplay")]
    return qs["fit_limit"] + limit * len(systems)


def eval_estimate(qs: dict, limit: int, probe_s: float) -> float:
    """Seconds the quickstart's evaluation stage is expected to take here."""
    return EVAL_PROBES_PER_CONVERSATION * probe_s * model_conversations(qs, limit)


def train_minutes(cap: float, budget: float | None, spent_s: float, eval_s: float) -> float:
    """The training budget: ``cap`` minutes at most, and no more than what the whole
    quickstart's ``budget`` (minutes; None: no bound) leaves once ``spent_s`` seconds have gone
    and the evaluation (``eval_s``) and the train stage's own overhead are reserved; never
    below ``MIN_TRAIN_MINUTES``."""
    if budget is None:
        return cap
    left = (60 * budget - spent_s - eval_s - TRAIN_OVERHEAD_S) / 60
    return round(max(MIN_TRAIN_MINUTES, min(cap, left)), 1)


def recorded_stage_args(record: Path) -> dict[str, list[str]]:
    """The stage arguments of the last quickstart in a workspace, in today's option names, so
    that a workspace from before a rename does not rerun its stages (or {} without a record)."""
    if not record.exists():
        return {}
    stages = read_json(record).get("stage_args", {})
    return {name: [RENAMED_OPTIONS.get(a, a) for a in args] for name, args in stages.items()}


def same_args(a: list[str], b: list[str]) -> bool:
    """Stage arguments equal once paths are compared resolved ("talkplay-work/world" and
    "/home/me/talkplay-work/world" are the same workspace; relative to the current directory)."""
    def norm(args: list[str]) -> list[str]:
        return [str(Path(x).resolve()) if not x.startswith("-") and os.sep in x else x
                for x in args]
    return norm(a) == norm(b)


def _invoke(args: list[str]) -> None:
    """Run one ``talkplay`` command in this process; raise on a non-zero exit."""
    command = typer.main.get_command(app)
    try:
        # Without standalone mode a command that fails (``fail`` -> exit 2) returns its exit
        # code instead of raising: a stage that failed must not pass for done.
        rc = command.main(args, prog_name="talkplay", standalone_mode=False)
        if isinstance(rc, int) and rc:
            raise RuntimeError(f"`talkplay {' '.join(args)}` exited with code {rc}")
    except click.exceptions.Exit as e:
        if e.exit_code:
            raise RuntimeError(f"`talkplay {' '.join(args)}` exited with code {e.exit_code}") from e
    except click.ClickException as e:
        raise RuntimeError(f"`talkplay {' '.join(args)}`: {e.format_message()}") from e


def _newer(a: Path, b: Path) -> bool:
    """``a`` exists and was written after ``b`` (or ``b`` does not exist)."""
    return a.exists() and (not b.exists() or a.stat().st_mtime >= b.stat().st_mtime)


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


@app.command("quickstart")
def quickstart(
    data: Annotated[Path | None, typer.Option(
        help="Use this dataset instead of building the embedded world.")] = None,
    work: Annotated[Path, typer.Option(help="Where the world, run and results go.")] = Path("talkplay-work"),
    profile: Annotated[str, typer.Option(help="small (CPU default) or tiny (smoke test).")] = "small",
    minutes: Annotated[float, typer.Option(
        help="Training budget in minutes, at most (--budget may leave less).")] = 18.0,
    budget: Annotated[float, typer.Option(
        help="Minutes for the whole quickstart, world to results (setup and the server not "
             "counted): training gets what the other stages leave, the evaluation's share "
             "estimated from this machine's speed. 0: no bound, train for --minutes.")
    ] = BUDGET_MINUTES,
    eval_limit: Annotated[int | None, typer.Option(
        help="Test conversations to evaluate (default: small 20, tiny 4).")] = None,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Start the chat server at the end.")] = True,
    port: Annotated[int, typer.Option(help="Chat server port (127.0.0.1).")] = 8000,
) -> None:
    """Build the world, synthesise conversations, embed, tokenize, fine-tune SmolLM2, evaluate
    TalkPlay against every baseline, then serve the chat. Rerunning reuses finished stages."""
    if profile not in QUICKSTART_SETTINGS:
        fail(f"unknown profile {profile!r}; choose {', '.join(QUICKSTART_SETTINGS)}")
    qs = QUICKSTART_SETTINGS[profile]
    data = data or work / "world"
    run, out = work / "run", work / "results"
    limit = qs["eval_limit"] if eval_limit is None else eval_limit
    if limit < 1:
        fail("--eval-limit must be at least 1")
    if budget < 0 or minutes <= 0:
        fail("--budget must be 0 (no bound) or more, and --minutes more than 0")
    started_all = time.perf_counter()
    timings: dict[str, float] = {}
    plan: dict[str, float] = {}
    # A stage also reruns when its arguments changed since the last quickstart in WORK
    # (e.g. a larger --minutes resumes training from its checkpoint for that many minutes more).
    record = work / "quickstart.json"
    before = recorded_stage_args(record)
    stage_args: dict[str, list[str]] = {}

    def stage(name: str, done: Callable[[], bool], args: list[str],
              prepare: Callable[[list[str]], list[str]] | None = None) -> None:
        """Run ``args`` unless done with the same arguments; ``prepare`` turns the recorded
        arguments into the ones run (the train stage's budget, which depends on the time)."""
        stage_args[name] = args
        if done() and same_args(before.get(name, args), args):
            console.rule(f"[bold]{name}[/]: up to date, skipped")
            timings[name] = 0.0
            return
        console.rule(f"[bold]{name}[/]")
        started = time.perf_counter()
        try:
            _invoke(prepare(args) if prepare else args)
        except Exception as e:  # noqa: BLE001 - any failure is reported with its stage
            fail(f"stage '{name}' failed: {type(e).__name__}: {e}")
        timings[name] = round(time.perf_counter() - started, 1)

    def has_conversations() -> bool:
        manifest = read_json(data / "manifest.json")
        return bool(manifest.get("counts", {}).get("conversations"))

    run_done = run / "summary.json"
    stage("world", lambda: (data / "manifest.json").exists(),
          ["data", "synth", "--out", str(data), *qs["world"]])
    stage("conversations", has_conversations, ["data", "conversations", "--data", str(data)])
    train_profile = "small" if profile == "small" else "tiny"
    # embed is cached by input fingerprint: rerunning it costs seconds
    stage("embed", lambda: False, ["embed", "--data", str(data), "--profile", train_profile])
    stage("tokenize", lambda: _newer(data / "tokenizer" / "manifest.json",
                                     data / "embeddings" / "manifest.json"),
          ["tokenize", "--data", str(data), *qs["tokenize"]])

    def budgeted(args: list[str]) -> list[str]:
        """The train stage's arguments with --max-minutes cut to what --budget leaves."""
        if not budget:
            return args
        probe = probe_seconds(train_profile)
        plan.update(probe_s=round(probe, 4), eval_estimate_s=round(eval_estimate(qs, limit, probe)))
        spent = time.perf_counter() - started_all
        plan["train_minutes"] = train_minutes(minutes, budget, spent, plan["eval_estimate_s"])
        console.print(f"training for {plan['train_minutes']} minutes: --budget {budget:g} less "
                      f"{spent / 60:.1f} spent, about {plan['eval_estimate_s'] / 60:.1f} for the "
                      f"evaluation (estimated from this machine's speed) and "
                      f"{TRAIN_OVERHEAD_S / 60:.0f} to load and save the model")
        if plan["train_minutes"] == MIN_TRAIN_MINUTES:
            console.print(f"[bold yellow]warning:[/] --budget {budget:g} leaves no time to train;"
                          f" training {MIN_TRAIN_MINUTES:g} minutes, the quickstart will overrun")
        i = args.index("--max-minutes")
        return [*args[:i + 1], str(plan["train_minutes"]), *args[i + 2:]]

    # Recorded with --minutes (the cap): a rerun with the same options does not retrain
    # because the time left differs.
    stage("train", lambda: _newer(run_done, data / "tokenizer" / "manifest.json"),
          ["train", "--data", str(data), "--run", str(run), "--profile", train_profile,
           "--max-minutes", str(minutes), *qs["train"]], prepare=budgeted)
    stage("evaluate", lambda: _newer(out / "results.json", run_done),
          ["evaluate", "--data", str(data), "--run", str(run), "--out", str(out), "--limit",
           str(limit), "--systems", qs["systems"], "--replies", str(qs["replies"]),
           "--fit-limit", str(qs["fit_limit"])])
    summary = {"data": str(data), "run": str(run), "results": str(out), "stages_s": timings,
               "stage_args": stage_args, "budget_minutes": budget or None, "plan": plan,
               "total_s": round(sum(timings.values()), 1),
               "wall_s": round(time.perf_counter() - started_all, 1),
               "peak_rss_mb": round(_peak_mb())}
    write_json(work / "quickstart.json", summary)
    table = Table(title="quickstart stages")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in timings.items():
        table.add_row(name, f"{seconds:.1f}" if seconds else "skipped")
    table.add_row("[bold]total[/]", f"{summary['total_s']:.1f}")
    console.print(table)
    if plan and timings.get("evaluate"):
        console.print(f"evaluation {timings['evaluate']:.0f} s (estimated {plan['eval_estimate_s']:.0f}"
                      f" s); the quickstart {summary['wall_s'] / 60:.1f} minutes of its "
                      f"--budget {budget:g}")
    console.print(f"peak memory {summary['peak_rss_mb']} MB; results table: {out / 'results.md'}; "
                  f"plots: {out / 'mrr_by_turn.png'}, {run / 'curves.png'}")
    if serve:
        console.rule("[bold]serve[/]")
        try:
            _invoke(serve_args(run, port))
        except Exception as e:  # noqa: BLE001
            fail(f"stage 'serve' failed: {type(e).__name__}: {e}")
