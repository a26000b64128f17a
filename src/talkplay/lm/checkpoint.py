"""Run directories and resumable training checkpoints. Every write is atomic.

```
RUN/model/              HF save_pretrained: model + tokenizer with music tokens (best by val CE),
                        and dense_head.{safetensors,json} when trained with one
RUN/tokenizer/          copy of the codebook (talkplay.tokenize.codebook)
RUN/config.json         the resolved Profile
RUN/manifest.json       kind=run, data dir, base model, vocabulary size, best_step and
                        best_val_ce of RUN/model (None until the first validation saves it)
RUN/checkpoints/last/   state.pt (model, optimizer, scheduler, step, data position, RNG states,
                        dense head)
```
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from talkplay.config import Profile, asdict
from talkplay.io import MANIFEST, atomic_dir, atomic_path, make_manifest, read_json, write_json
from talkplay.lm.dense_head import DenseHead, save_head
from talkplay.tokenize.codebook import Codebook

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LAST = "checkpoints/last"


def rng_state() -> dict:
    """Python, numpy and torch (CPU and CUDA) RNG states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: str | Path, *, model: PreTrainedModel, optimizer: torch.optim.Optimizer,
                    scheduler: Any, step: int, data_position: dict, extra: dict | None = None,
                    modules: dict[str, torch.nn.Module] | None = None) -> Path:
    """Write ``RUN/checkpoints/last`` atomically (replacing the previous one).

    Args:
        run_dir: the run directory.
        model: the unwrapped model.
        optimizer, scheduler: their ``state_dict`` is saved.
        step: optimizer steps done.
        data_position: ``TrainData.position`` (where the next batch comes from).
        extra: more JSON-able state (best validation loss, ...).
        modules: more trained modules (the dense head), saved under their names.
    Returns:
        The checkpoint directory.
    """
    path = Path(run_dir) / LAST
    with atomic_dir(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng_state(),
                    **{k: m.state_dict() for k, m in (modules or {}).items()}}, tmp / "state.pt")
        write_json(tmp / "meta.json", {"step": step, "data_position": data_position,
                                       **(extra or {})})
    return path


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``RUN/checkpoints/last`` is complete (its meta.json is written last)."""
    return (Path(run_dir) / LAST / "meta.json").exists()


def load_checkpoint(run_dir: str | Path) -> tuple[dict, dict] | None:
    """``(tensors, meta)`` of ``RUN/checkpoints/last``, or None when there is none.

    ``tensors`` holds model/optimizer/scheduler state dicts and RNG states (CPU tensors).
    """
    path = Path(run_dir) / LAST
    if not has_checkpoint(run_dir):
        return None
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    return state, read_json(path / "meta.json")


def save_model(run_dir: str | Path, model: PreTrainedModel,
               tokenizer: PreTrainedTokenizerBase, head: DenseHead | None = None) -> Path:
    """Write ``RUN/model`` (HF format: model + tokenizer with music tokens, and the dense head
    when there is one) atomically."""
    path = Path(run_dir) / "model"
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if head is not None:
            save_head(tmp, head)
    return path


def save_run(run_dir: str | Path, *, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
             codebook_dir: str | Path, profile: Profile, data_dir: str | Path,
             **manifest: Any) -> Path:
    """Make ``run_dir`` self-contained: model, codebook copy, resolved config, manifest.

    The manifest says ``best_step: None`` (untrained) until ``record_best`` marks the model
    as the best one validated so far.

    Args:
        run_dir: the run directory (created).
        model, tokenizer: expanded model and tokenizer.
        codebook_dir: the codebook directory the music tokens index (copied byte for byte).
        profile: the resolved configuration.
        data_dir: the dataset the run trains on.
        manifest: more manifest fields.
    Returns:
        ``run_dir``.
    """
    run_dir = Path(run_dir)
    save_model(run_dir, model, tokenizer)
    with atomic_dir(run_dir / "tokenizer") as tmp:
        shutil.copytree(codebook_dir, tmp, dirs_exist_ok=True)
    k = Codebook.load(run_dir / "tokenizer").k
    write_json(run_dir / "config.json", asdict(profile))
    write_json(run_dir / MANIFEST, make_manifest(
        "run", FORMAT_VERSION, data=str(Path(data_dir).resolve()), base=profile.model.base,
        vocab_size=len(tokenizer), k=k, **{"best_step": None, "best_val_ce": None, **manifest}))
    return run_dir


def record_best(run_dir: str | Path, step: int, val_ce: float) -> None:
    """Mark ``RUN/model`` as trained: the step and validation CE it was saved at (manifest).

    Call it right after ``save_model`` writes the best model.
    """
    path = Path(run_dir) / MANIFEST
    manifest = read_json(path)
    manifest.update(best_step=int(step), best_val_ce=float(val_ce))
    write_json(path, manifest)


def load_run(path: str | Path, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32
             ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Codebook, dict]:
    """Load a fine-tuned run for recommendation or evaluation.

    Args:
        path: a run directory written by ``talkplay train``.
        device: where to put the model.
        dtype: model weights dtype.
    Returns:
        ``(model in eval mode, tokenizer with music tokens, codebook, manifest)``. Music-token
        ids: ``talkplay.lm.vocab.music_token_table(tokenizer, codebook.k)``.
    """
    path = Path(path)
    if not (path / MANIFEST).exists() or not (path / "model" / "config.json").exists():
        raise FileNotFoundError(f"{path}: not a TalkPlay run (expected manifest.json and model/; "
                                "run `talkplay train` first)")
    manifest = read_json(path / MANIFEST)
    if "best_step" in manifest and manifest["best_step"] is None:
        # Runs from before best_step was recorded lack the key and are not warned about.
        log.warning("%s: the model has no trained weights yet (training stopped before its "
                    "first validation); recommendations come from the untrained model", path)
    tokenizer = AutoTokenizer.from_pretrained(path / "model")
    model = AutoModelForCausalLM.from_pretrained(path / "model", dtype=dtype).to(device)
    model.eval()
    return model, tokenizer, Codebook.load(path / "tokenizer"), manifest


def append_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Append rows to a JSON-lines file (one flush; atomic enough for a log)."""
    import json

    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def truncate_jsonl(path: str | Path, max_step: int) -> None:
    """Keep only rows with ``step <= max_step`` (a resumed run rewrites later rows)."""
    import json

    path = Path(path)
    if not path.exists():
        return
    rows = [r for r in path.read_text().splitlines() if r.strip()]
    keep = [r for r in rows if json.loads(r).get("step", 0) <= max_step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(r + "\n" for r in keep))
