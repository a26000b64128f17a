"""Hypothesis strategies that corrupt valid JSON input, and the importers' contract check.

Shared by tests/test_import_*.py: every importer must either raise a DataError that names the
input file (and, for a bad record, the field), or under ``skip_invalid`` write a valid
dataset; never raise anything else and never leave a partial dataset directory behind.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

from hypothesis import strategies as st

from talkplay.data.dataset import read_dataset, validate
from talkplay.data.errors import DataError

WRONG_VALUES = [None, 0, -7, 1.5, 2**70, True, "", "x", "\ud800", [], [1], {}, {"a": 1}]


def paths_of(obj, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path inside a JSON value (not the root itself)."""
    out = []
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return out
    for k, v in items:
        out.append((*prefix, k))
        out.extend(paths_of(v, (*prefix, k)))
    return out


def _set(obj, path: tuple, value=None, delete: bool = False):
    obj = copy.deepcopy(obj)
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


@st.composite
def corrupt_doc(draw, doc) -> tuple[str, object]:
    """Return ``(how, corrupted JSON value)``: a field removed or given a wrong-typed value."""
    path = draw(st.sampled_from(paths_of(doc)))
    if draw(st.booleans()):
        return f"delete {path}", _set(doc, path, delete=True)
    value = draw(st.sampled_from(WRONG_VALUES))
    return f"set {path}={value!r}", _set(doc, path, value)


@st.composite
def corrupt_text(draw, text: str) -> tuple[str, str]:
    """Return ``(how, corrupted text)``: truncated, or a stray character inserted."""
    cut = draw(st.integers(0, len(text) - 1))
    if draw(st.booleans()):
        return f"truncate at {cut}", text[:cut]
    junk = draw(st.sampled_from(["{", "]", ",", '"', "\\", "\x00", "nul", "\ufeff", ":", "\\ud800"]))
    return f"insert {junk!r} at {cut}", text[:cut] + junk + text[cut:]


def check_contract(run: Callable[[], object], out: Path, files: list[Path], *,
                   skip_invalid: bool, how: str) -> str:
    """Run an importer and check the contract. Returns "ok" or "error" for statistics."""
    before = set(out.parent.iterdir())
    try:
        run()
    except DataError as e:
        message = str(e)
        assert any(str(f) in message for f in files), f"{how}: error names no file: {message}"
        if not skip_invalid:
            # A bad record is located by a field path; only whole-input problems have none.
            assert e.field or "no valid" in e.reason or "cannot give" in e.reason, (
                f"{how}: error names no field: {message}")
        assert set(out.parent.iterdir()) == before, f"{how}: files left behind after an error"
        return "error"
    ds = read_dataset(out)
    validate(ds, where=str(out))
    assert ds.tracks, how
    return "ok"


def dump(path: Path, value) -> Path:
    path.write_text(json.dumps(value))
    return path
