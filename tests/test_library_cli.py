"""`dclip library ...` against a real temp library (DCLIP_LIBRARY_DIR is set by conftest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from dclip_desktop.cli.main import main
from dclip_desktop.library.store import Library

REPO = Path(__file__).resolve().parents[1]


def lora(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {"conv_in.weight.lora_A": torch.randn(4, 3, 3, 3), "conv_in.weight.lora_B": torch.randn(32, 4, 1, 1),
            "conv_in.weight.lora_scale": torch.tensor(1.0)}


def add(lib: Library, name: str, base: str = "demo-shapes"):
    return lib.save_attribute(name, lora(), "lora", {"base_id": base, "source": "circle", "target": "square",
                                                     "t0": 300, "s_for": 40, "s_gen": 6})


def test_list_show_rename_rm_restore(capsys):
    lib = Library()
    add(lib, "square")
    add(lib, "gothic", base="church")
    assert main(["library", "list"]) == 0
    out = capsys.readouterr().out
    assert "square" in out and "gothic" in out and "NAME" in out and "circle → square" in out
    assert main(["library", "list", "--base", "church", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["gothic"] and rows[0]["damaged"] is None
    assert main(["library", "show", "square"]) == 0
    assert "t0:" in capsys.readouterr().out
    assert main(["library", "rename", "square", "boxy"]) == 0
    assert main(["library", "rename", "boxy", "GOTHIC"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["library", "rm", "boxy"]) == 0
    assert main(["library", "list", "--trash"]) == 0
    assert "boxy" in capsys.readouterr().out
    assert main(["library", "restore", "boxy"]) == 0
    assert {e.name for e in lib.list()} == {"boxy", "gothic"}
    assert main(["library", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no attribute named 'nope'" in err


def test_export_import_verify_gc_empty_trash(tmp_path, capsys):
    lib = Library()
    entry = add(lib, "square")
    out_file = tmp_path / "square.dclip"
    assert main(["library", "export", "square", str(out_file)]) == 0 and out_file.is_file()
    assert main(["library", "import", str(out_file), "--name", "square 2"]) == 0
    assert main(["library", "verify"]) == 0
    with open(entry.weights_path, "r+b") as fh:
        fh.seek(-2, os.SEEK_END)
        fh.write(b"\x00\x01")
    assert main(["library", "verify"]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED" in out and "1 damaged" in out
    assert main(["library", "list"]) == 0
    assert "DAMAGED" in capsys.readouterr().out
    (lib.attributes_dir / ".tmp-deadbeef").mkdir()
    assert main(["library", "gc"]) == 0
    assert not (lib.attributes_dir / ".tmp-deadbeef").exists()
    assert main(["library", "rm", "square"]) == 0
    assert main(["library", "empty-trash"]) == 0
    assert "deleted 1" in capsys.readouterr().out
    assert [e.name for e in lib.list()] == ["square 2"]


def test_module_entry_point(tmp_path):
    add(Library(), "via-subprocess")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "dclip_desktop", "library", "list", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert [r["name"] for r in json.loads(res.stdout)] == ["via-subprocess"]
