"""The package's imports follow the flow of data: no stage imports a later one.

dataset -> embed -> tokenize -> lm -> train -> recommend -> evaluate -> serve -> cli; the
top-level modules (config, io, linalg) sit below every stage and import none of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import talkplay

STAGES = ["data", "embed", "tokenize", "lm", "train", "recommend", "evaluate", "serve", "cli"]
ROOT = Path(talkplay.__file__).parent


def talkplay_imports(path: Path) -> list[str]:
    """Every ``talkplay.*`` module the file imports, lazy imports inside functions included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return [m for m in out if m.startswith("talkplay.")]


def rank(part: str) -> int:
    """Position in the flow; -1 for the top-level helpers below every stage."""
    return STAGES.index(part) if part in STAGES else -1


def test_no_module_imports_a_later_stage():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        here = path.relative_to(ROOT).parts[0].removesuffix(".py")
        for module in talkplay_imports(path):
            there = module.split(".")[1]
            if rank(there) > rank(here):
                upward.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not upward, upward


def test_the_check_sees_an_upward_import(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from talkplay.tokenize.kmeans import cap_k\n")
    assert talkplay_imports(path) == ["talkplay.tokenize.kmeans"]
    assert rank("tokenize") > rank("embed") > rank("data") > rank("linalg")
