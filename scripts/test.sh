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
# The two-replica test routes through nginx with the configuration docs/serving.md gives.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light) >/dev/null 2>&1 \
    || echo "warning: could not install nginx; the two-replica proxy test will skip"
fi
# The slow test of the LLM generator against a real llama.cpp server needs llama-cpp-python's
# server, a source package: the first install compiles llama.cpp (about 8 minutes on one core
# of the development machine; pip keeps the built wheel in its cache, so later installs take
# seconds). Without it, that test skips with a message saying how to install it.
if ! .venv/bin/python -c "from talkplay.data.conversations.local_server import server_available as ok; raise SystemExit(not ok())"; then
  echo "installing llama-cpp-python[server] (compiles llama.cpp the first time) ..."
  CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv/bin/pip install -q 'llama-cpp-python[server]==0.3.36' >/dev/null 2>&1 \
    || echo "warning: could not install llama-cpp-python[server]; the llama.cpp server test will skip"
fi
exec .venv/bin/python -m pytest -q "$@"
