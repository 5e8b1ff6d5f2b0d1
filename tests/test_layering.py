"""The engine (core, jobs, zoo, library) must not import Qt: the CLI and batch jobs run headless."""

import subprocess
import sys
from pathlib import Path

ENGINE = ["core", "jobs", "zoo", "library"]
PKG = Path(__file__).resolve().parents[1] / "dclip_desktop"


def test_engine_packages_do_not_import_qt():
    modules = [
        f"dclip_desktop.{pkg}.{p.stem}" for pkg in ENGINE for p in sorted((PKG / pkg).glob("*.py")) if p.stem != "__init__"
    ]
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'shiboken6'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"Qt imported by the engine: {out.stdout}"
    assert len(modules) >= 5
