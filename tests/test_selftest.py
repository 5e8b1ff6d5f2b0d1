"""`dclip-desktop --self-test` (what the packaged app runs) passes on the bundled demo world, and only
when the edit really turns held-out red shapes blue."""

import os
import subprocess
import sys

import pytest
import torch

from dclip_desktop.demo import world
from dclip_desktop.selftest import check_edit

pytestmark = pytest.mark.slow  # acceptance: fine-tunes the demo base end to end


def test_self_test_passes_headless(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DCLIP_CONFIG_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "import sys; from dclip_desktop.gui.app import main; "
                          "sys.exit(main(['dclip-desktop', '--self-test']))"],
                         capture_output=True, text=True, env=env, timeout=500)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS" in out.stdout
    assert "the dominant colour inside the shape is blue in" in out.stdout
    assert "look like 'red' to CLIP" in out.stdout  # trained by the default path: sampled, CLIP-matched


def _toward_blue(share: float):
    blue = torch.tensor(world.COLORS["blue"], dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1
    return lambda x: (1 - share) * x + share * blue


def test_a_drift_toward_blue_fails_with_the_numbers():
    """What the old bar let through (progress 0.014 → 0.069): shapes a little bluer, still red."""
    ok, reason = check_edit(_toward_blue(0.1), log=lambda m: None)
    assert not ok
    assert "did not turn the shapes blue" in reason and "blue in 0 of 8 held-out red scenes" in reason
    assert "progress 0.0" in reason and "→ 0.1" in reason
    ok, reason = check_edit(lambda x: x, log=lambda m: None)  # no edit at all
    assert not ok and "blue in 0 of 8" in reason


def test_shapes_that_turn_blue_pass():
    ok, reason = check_edit(_toward_blue(0.9), log=lambda m: None)  # the whole scene, but blue shapes
    assert ok, reason
    assert "blue in 8 of 8" in reason
