"""Can Qt open a window here? Checked before QApplication exists, without importing Qt.

PySide6 ≥ 6.5's xcb platform plugin links system libraries that a fresh Debian/Ubuntu lacks; without
them Qt aborts with "could not load the Qt platform plugin xcb" and a screen of plugin diagnostics.
The app says instead, in one line, which apt command installs them.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Optional

XCB_PACKAGES = ("libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0", "libxcb-image0",
                "libxcb-render-util0", "libxcb-shape0", "libxcb-xinerama0", "libxcb-randr0", "libxcb-xkb1")
APT_COMMAND = "sudo apt-get install -y " + " ".join(XCB_PACKAGES)

# What the plugin links from those packages (ldd libqxcb.so and libQt6XcbQpa.so.6, PySide6 6.x).
# libxcb-xinerama0 is in the apt line because older Qt builds load it, but Qt 6 does not need it.
XCB_SONAMES = ("libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxkbcommon-x11.so.0",
               "libxcb-image.so.0", "libxcb-render-util.so.0", "libxcb-shape.so.0", "libxcb-randr.so.0",
               "libxcb-xkb.so.1")


def requested_platform(env: Mapping[str, str], qt_args: Sequence[str] = ()) -> str:
    """The platform Qt is told to use: `-platform NAME` on the command line, else $QT_QPA_PLATFORM
    ("" when neither; a "wayland;xcb" fallback list counts as its first entry)."""
    args = list(qt_args)
    if "-platform" in args[:-1]:
        return args[args.index("-platform") + 1]
    return env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()


def uses_xcb(env: Mapping[str, str], qt_args: Sequence[str] = (), platform: str = sys.platform) -> bool:
    """Would Qt load its xcb plugin? On Linux when asked to, or by default on an X display (a Wayland
    session, with or without Xwayland's DISPLAY, gets the wayland plugin first)."""
    if not platform.startswith("linux"):
        return False
    name = requested_platform(env, qt_args)
    if name:
        return name == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def missing_libraries(sonames: Sequence[str] = XCB_SONAMES) -> list[str]:
    """The sonames the dynamic loader cannot load (ctypes asks it the way Qt's plugin loader will)."""
    missing = []
    for name in sonames:
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.append(name)
    return missing


def window_problem(env: Optional[Mapping[str, str]] = None, qt_args: Sequence[str] = (),
                   sonames: Sequence[str] = XCB_SONAMES) -> Optional[str]:
    """One line saying why no window can open here and what fixes it, or None."""
    env = os.environ if env is None else env
    if not uses_xcb(env, qt_args):
        return None
    missing = missing_libraries(sonames)
    if not missing:
        return None
    return (f"dclip-desktop: the Qt window needs system libraries that are missing ({', '.join(missing)}); "
            f"install them with: {APT_COMMAND}")
