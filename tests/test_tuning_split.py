"""Tuning scripts read the valid split; the test split only with an explicit, warned override."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module (registered under NAME first: its dataclasses look their
    module up while it executes)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_quickstart_sweep_refuses_the_test_split(capsys):
    sweep = load_benchmark("quickstart_sweep")
    with pytest.raises(SystemExit, match="optimistic"):
        sweep.main(["--config", "a:data=nowhere", "--split", "test"])
    sweep.check_split("valid", allow_test=False)  # the default passes silently
    sweep.check_split("test", allow_test=True)
    assert "WARNING: tuning on the TEST split" in capsys.readouterr().err
