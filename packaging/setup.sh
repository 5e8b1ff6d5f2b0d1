#!/usr/bin/env bash
# One set-up path for users, developers and CI: a virtual environment in .venv with everything the
# app, the tests and the packager need. Safe to re-run; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip
# Pinned so pip resolves torch from the local wheel store; an unpinned torch downloads several GB.
$VPY -m pip install -q torch==2.14.1 torchvision==0.29.1
$VPY -m pip install -q -e '.[dev]'
# facenet-pytorch pins torch<2.3 but works with modern torch: install it without its dependencies.
$VPY -m pip install -q --no-deps facenet-pytorch==2.6.0
