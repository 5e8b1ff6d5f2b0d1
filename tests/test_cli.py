"""The `dclip` command line on the demo base: help, the main jobs end to end, clear errors."""

import json
import subprocess
import sys

import pytest
import torch

from dclip_desktop.cli.main import build_parser, main
from dclip_desktop.demo import world
from dclip_desktop.jobs.metadata import read_metadata


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def test_every_subcommand_has_help(capsys):
    names = set(_subcommands())
    assert {"models", "reconstruct", "finetune", "edit", "translate", "info", "demo", "library", "batch",
            "bench"} <= names
    for name in names:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
    out = subprocess.run([sys.executable, "-m", "dclip_desktop", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "finetune" in out.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["finetune", "--src", "red", "--tgt", "blue", "--name", "x", "--t0", "1200", "--sample", "2"], "t0"),
        (["finetune", "--src", "red", "--tgt", "blue", "--name", "x", "--s-gen", "1", "--sample", "2"], "S_gen"),
        (["finetune", "--base", "nope", "--src", "a", "--tgt", "b", "--name", "x"], "unknown base"),
        (["models", "download", "celebahq"], "dclip models download celebahq"),
        (["edit", "missing.png", "--attr", "nothing", "-o", "out.png"], "nothing"),
        (["edit", "missing.png", "--attr", "a", "--schedule", "[[500,", "-o", "out.png"], "--schedule"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.lower() in err.lower()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_image_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    assert main(["reconstruct", str(bad), "-o", str(tmp_path / "r.png"), "-q"]) == 2
    assert "not an image" in capsys.readouterr().err


def test_finetune_edit_info_reconstruct_on_the_demo_base(tmp_path, capsys):
    imgs = world.save_scenes(tmp_path / "photos", 4, color="red")
    assert main(["finetune", "--src", "red", "--tgt", "blue", "--name", "blue", "--images", str(imgs),
                 "--s-for", "8", "--s-gen", "3", "--rank", "2", "-q"]) == 0
    assert main(["library", "list"]) == 0
    assert "blue" in capsys.readouterr().out
    out = tmp_path / "edited.png"
    src = imgs / "scene-00.png"
    before = src.read_bytes()
    assert main(["edit", str(src), "--attr", "blue", "--degree", "0.7", "--s-for", "8", "--s-gen", "8", "-o",
                 str(out), "-q"]) == 0
    assert src.read_bytes() == before  # the original is never touched
    meta = read_metadata(out)
    assert meta["degree"] == 0.7 and meta["attributes"][0]["name"] == "blue" and meta["t0"] == 301
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["base_id"] == "demo-shapes"
    # the coarse-to-fine split resolves to explicit rows in the metadata (one attribute: one band)
    assert main(["edit", str(src), "--attr", "blue", "--schedule", "t0", "--s-for", "8", "--s-gen", "8", "-o",
                 str(tmp_path / "split.png"), "-q"]) == 0
    assert read_metadata(tmp_path / "split.png")["schedule"] == [[0, [1.0]]]
    # writing onto the input is refused
    assert main(["edit", str(src), "--attr", "blue", "-o", str(src), "-q"]) == 2
    assert main(["reconstruct", str(src), "-o", str(tmp_path / "recon.png"), "--t0", "200", "-q"]) == 0
    assert "MAE" in capsys.readouterr().out
    res = main(["translate", str(src), "--attr", "blue", "--rounds", "1", "--seeds", "2", "--s-for", "6",
                "--s-gen", "6", "-o", str(tmp_path / "cands"), "-q"])
    assert res == 0 and len(list((tmp_path / "cands").glob("*.png"))) == 2


@pytest.mark.slow
def test_dclip_demo_writes_grid_and_metrics(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--train", "4", "--eval", "3", "--epochs", "1", "-q"]) == 0
    report = json.loads((tmp_path / "demo-metrics.json").read_text())
    assert report["metrics"]["n"] == 3 and 0.0 <= report["metrics"]["success"] <= 1.0
    assert report["heldout_seed_start"] >= world.HELDOUT_SEED_START
    from PIL import Image

    with Image.open(tmp_path / "demo-grid.png") as g:
        assert g.size[0] > 3 * 32 and g.size[1] > 2 * 32
    assert torch.is_tensor(world.make_scenes([0])[0])
