"""`dclip-desktop --self-test` (what the packaged app runs) passes on the bundled demo world."""

import os
import subprocess
import sys


def test_self_test_passes_headless(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DCLIP_CONFIG_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "import sys; from dclip_desktop.gui.app import main; "
                          "sys.exit(main(['dclip-desktop', '--self-test']))"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS" in out.stdout and "red→blue progress" in out.stdout
