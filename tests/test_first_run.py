"""The first five minutes on a fresh machine: `dclip-desktop --help/--version` without a display, one
clear line instead of Qt's plugin abort when the xcb libraries are missing, and File → Open starting in
the sample scenes, then wherever the user last opened from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from dclip_desktop import __version__
from dclip_desktop.gui.qt_platform import APT_COMMAND, missing_libraries, uses_xcb, window_problem

SCRIPT = Path(sys.executable).with_name("dclip-desktop")


def _run_app(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """`dclip-desktop ARGS` as a user types it (the installed script; the module where it is absent)."""
    cmd = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-c", "import sys; from dclip_desktop.gui.app "
                                                  "import main; sys.exit(main())", ]
    return subprocess.run(cmd + args, capture_output=True, text=True, env=env, timeout=120)


def _no_display_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return env


@pytest.mark.parametrize("flag", ["--help", "-h", "--version"])
def test_help_and_version_need_no_display(flag):
    # With no display and no platform set, creating a QApplication would abort: exit 0 proves none was made.
    out = _run_app([flag], _no_display_env())
    assert out.returncode == 0, out.stdout + out.stderr
    if flag == "--version":
        assert out.stdout.strip() == f"dclip-desktop {__version__}"
    else:
        assert "usage: dclip-desktop" in out.stdout and "--self-test" in out.stdout


def test_missing_library_is_named_with_the_apt_command():
    assert missing_libraries(["libc.so.6", "libdclip-no-such-lib.so.0"]) == ["libdclip-no-such-lib.so.0"]
    x11 = {"DISPLAY": ":0"}
    line = window_problem(x11, sonames=["libc.so.6", "libdclip-no-such-lib.so.0"])
    if sys.platform.startswith("linux"):
        assert line is not None and "\n" not in line
        assert "libdclip-no-such-lib.so.0" in line and APT_COMMAND in line
    assert window_problem(x11, sonames=["libc.so.6"]) is None
    # No xcb, no check: offscreen, Wayland, or no display at all.
    for env, args in (({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, []), ({"DISPLAY": ":0"}, ["-platform", "offscreen"]),
                      ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, []), ({}, [])):
        assert not uses_xcb(env, args, platform="linux")
        assert window_problem(env, args, sonames=["libdclip-no-such-lib.so.0"]) is None
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb"}, platform="linux")
    assert not uses_xcb({"DISPLAY": ":0"}, platform="darwin")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not missing_libraries(),
                    reason="this machine has every library Qt's xcb plugin needs")
def test_app_without_xcb_libraries_prints_one_line_and_exits():
    """The real check on a machine that lacks them (this one does): one line, non-zero, no Qt abort."""
    env = {**_no_display_env(), "DISPLAY": ":99"}
    out = _run_app([], env)
    assert out.returncode != 0
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert APT_COMMAND in lines[0] and all(name in lines[0] for name in missing_libraries())
    assert "could not load the Qt platform plugin" not in lines[0]


def test_open_dialog_starts_in_samples_then_the_last_folder(tmp_path):
    from dclip_desktop.demo import samples_dir
    from dclip_desktop.gui.models.folders import open_dir, remember_dir

    ini = str(tmp_path / "gui.ini")
    first = open_dir(QSettings(ini, QSettings.Format.IniFormat))
    assert first and Path(first) == samples_dir() and (Path(first) / "red_circle.png").is_file()
    photos = tmp_path / "photos"
    photos.mkdir()
    remember_dir(QSettings(ini, QSettings.Format.IniFormat), str(photos / "cat.png"))
    assert open_dir(QSettings(ini, QSettings.Format.IniFormat)) == str(photos)  # a new QSettings: a restart
    photos.rmdir()  # a folder that has gone away: back to the samples
    assert open_dir(QSettings(ini, QSettings.Format.IniFormat)) == first
