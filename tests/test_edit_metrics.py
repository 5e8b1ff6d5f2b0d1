"""Metrics on screen and the γ strip (issue 20): `dclip edit --metrics --json FILE` and `--degree
0,0.25,0.5,0.75,1`, on an attribute made the documented way (`dclip finetune --src red --tgt blue`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from dclip_desktop.cli.main import main
from dclip_desktop.jobs.metadata import read_metadata

pytestmark = pytest.mark.slow  # fine-tunes an attribute the documented way

RED_CIRCLE = Path(__file__).resolve().parents[1] / "resources" / "samples" / "red_circle.png"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics-home")
    with pytest.MonkeyPatch.context() as mp:
        _use(mp, root)
        assert main(["finetune", "--src", "red", "--tgt", "blue", "--name", "blue", "--sample", "8", "--epochs", "2",
                     "-q"]) == 0
    return root


def _use(mp, root: Path) -> None:
    mp.setenv("DCLIP_LIBRARY_DIR", str(root / "library"))
    mp.setenv("DCLIP_LATENT_CACHE_DIR", str(root / "latents"))


@pytest.fixture
def shell(home, monkeypatch, tmp_path, capsys):
    _use(monkeypatch, home)
    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> tuple[int, str, str]:
        rc = main(list(argv))
        cap = capsys.readouterr()
        return rc, cap.out, cap.err

    return run


def test_metrics_are_printed_and_written(shell):
    rc, out, _ = shell("edit", str(RED_CIRCLE), "--attr", "blue", "-o", "blue.png", "--metrics", "--json", "m.json",
                       "-q")
    assert rc == 0
    doc = json.loads(Path("m.json").read_text())
    (row,) = doc["images"]
    assert row["output"] == "blue.png" and set(row) >= {"s_dir", "mae", "ssim"}
    assert 0 < row["mae"] < 1 and -1 <= row["ssim"] < 1 and row["s_dir"] > 0.2  # it did turn blue
    assert "id" not in row  # not a face base
    assert "lpips" in row or "lpips" in doc["unavailable"]
    assert f"S_dir {row['s_dir']:.3f}  MAE {row['mae']:.3f}  SSIM {row['ssim']:.3f}" in out
    if "lpips" not in row:
        assert "lpips: not measured: " in out


def test_the_strip_moves_the_right_way(shell):
    degrees = [0, 0.25, 0.5, 0.75, 1]
    rc, out, _ = shell("edit", str(RED_CIRCLE), "--attr", "blue", "--degree", ",".join(map(str, degrees)),
                       "-o", "strip.png", "--json", "s.json", "-q")
    assert rc == 0
    rows = json.loads(Path("s.json").read_text())["images"]
    assert [r["degree"] for r in rows] == degrees
    s_dir, ssim = [r["s_dir"] for r in rows], [r["ssim"] for r in rows]
    assert s_dir[0] < 0.1 < s_dir[-1] and ssim[0] > 0.95 > ssim[-1]
    assert s_dir == sorted(s_dir) and ssim == sorted(ssim, reverse=True)
    strip = Image.open("strip.png")
    assert strip.size == (32 * 5, 32)
    meta = read_metadata("strip.png")
    assert meta["degrees"] == degrees and "degree" not in meta and meta["operation"] == "edit-strip"
    # the panels are the single edits, pixel for pixel
    assert shell("edit", str(RED_CIRCLE), "--attr", "blue", "--degree", "0.5", "-o", "half.png", "-q")[0] == 0
    assert strip.convert("RGB").crop((64, 0, 96, 32)).tobytes() == Image.open("half.png").convert("RGB").tobytes()


@pytest.mark.parametrize("degree", ["2", "0,1.5", "nan", "0.5,0.5", "a,b", ""])
def test_bad_degree_is_one_line_exit_2(shell, degree):
    rc, out, err = shell("edit", str(RED_CIRCLE), "--attr", "blue", "--degree", degree, "-o", "x.png")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--degree" in err
    assert not Path("x.png").exists()


def test_json_onto_a_folder_fails_before_any_work(shell):
    Path("m").mkdir()
    rc, _, err = shell("edit", str(RED_CIRCLE), "--attr", "blue", "-o", "x.png", "--json", "m")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert not Path("x.png").exists()
