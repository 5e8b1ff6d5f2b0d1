#!/usr/bin/env bash
# Build the onedir bundle into dist/dclip-desktop and run its self-test (offscreen, and under Xvfb
# when xvfb-run is available). Takes minutes and ~5 GB with CUDA torch, so CI does not run it on
# every submission; run it before a release.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/setup.sh
start=$(date +%s)
.venv/bin/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/dclip_desktop.spec
echo "build: $(( $(date +%s) - start )) s, bundle $(du -sh dist/dclip-desktop | cut -f1)"
export DCLIP_CONFIG_DIR="$(mktemp -d)"
QT_QPA_PLATFORM=offscreen dist/dclip-desktop/dclip-desktop --self-test
if command -v xvfb-run >/dev/null; then
  QT_QPA_PLATFORM=xcb xvfb-run -a dist/dclip-desktop/dclip-desktop --self-test
fi
