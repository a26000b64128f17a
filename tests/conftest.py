"""Shared fixtures: paths to the shared real data, a toy catalog."""

from __future__ import annotations

import os
from pathlib import Path

# CLI output goes through rich, which wraps at the terminal width (80 columns under a test
# runner): wide enough that error messages with long temporary paths stay on one line.
os.environ.setdefault("COLUMNS", "200")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The shared real data folder; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (see README: real data for development)")
    return SHARED_DATA
