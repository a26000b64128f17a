#!/usr/bin/env bash
# Set up (with test tools) and run the whole test suite, slow tier included.
# The browser test drives Debian's Chromium; as root we install it when it is missing
# (elsewhere the test skips with a message saying how to install it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash setup.sh --dev
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "warning: could not install chromium; the browser test will skip"
fi
exec .venv/bin/python -m pytest -q "$@"
