#!/usr/bin/env bash
# Set up (with test tools) and run the whole test suite, slow tier included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash setup.sh --dev
exec .venv/bin/python -m pytest -q "$@"
