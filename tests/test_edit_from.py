"""Re-running an edit from its output (issue 20): `dclip edit IMG --from OUT.png` redoes the edit OUT.png's
settings describe, bit for bit on the same machine and precision, and refuses when an attribute or the
base is not the one that made it. Also η > 0: a stochastic edit is reproduced from its recorded seed,
and a batch's outputs do not depend on the batch size."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dclip_desktop.cli.main import main

RED_CIRCLE = Path(__file__).resolve().parents[1] / "resources" / "samples" / "red_circle.png"
QUICK = ["--sample", "2", "--oversample", "1", "--epochs", "1", "--s-for", "4", "--s-gen", "3", "--rank", "2", "-q"]
STEPS = ["--s-for", "8", "--s-gen", "8", "-q"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("from-home")
    with pytest.MonkeyPatch.context() as mp:
        _use(mp, root, "latents")
        for name, tgt in (("blue", "blue"), ("green", "green")):
            assert main(["finetune", "--src", "red", "--tgt", tgt, "--name", name, *QUICK]) == 0
    return root


def _use(mp, root: Path, latents: str) -> None:
    mp.setenv("DCLIP_LIBRARY_DIR", str(root / "library"))
    mp.setenv("DCLIP_LATENT_CACHE_DIR", str(root / latents))


@pytest.fixture
def shell(home, monkeypatch, tmp_path, capsys):
    _use(monkeypatch, home, "latents")
    monkeypatch.chdir(tmp_path)

    def run(*argv: str, fresh_cache: bool = False) -> tuple[int, str]:
        if fresh_cache:  # nothing cached: the re-run inverts again, as on another day
            monkeypatch.setenv("DCLIP_LATENT_CACHE_DIR", str(tmp_path / f"latents-{len(list(tmp_path.iterdir()))}"))
        rc = main(list(argv))
        monkeypatch.setenv("DCLIP_LATENT_CACHE_DIR", str(home / "latents"))
        cap = capsys.readouterr()
        return rc, cap.err

    return run


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("settings", [
    ["--attr", "blue"],
    ["--attr", "blue:0.5", "--attr", "green:0.5", "--schedule", "[[500,[1,0]],[0,[0.5,0.5]]]"],
    ["--attr", "blue", "--t0", "201"],
    ["--attr", "blue", "--eta", "0.5", "--seed", "7"],
    ["--attr", "blue", "--sampler", "ddpm", "--seed", "3"],
], ids=["single", "mix-schedule", "other-t0", "eta-seed", "ddpm"])
def test_from_reproduces_the_output_bit_for_bit(shell, settings):
    assert shell("edit", str(RED_CIRCLE), *settings, *STEPS, "-o", "out.png")[0] == 0
    assert shell("edit", str(RED_CIRCLE), "--from", "out.png", "-o", "again.png", fresh_cache=True)[0] == 0
    assert np.array_equal(_pixels("out.png"), _pixels("again.png"))


def test_eta_changes_the_edit_and_the_seed_matters(shell):
    for name, extra in (("det", []), ("s1", ["--eta", "0.8", "--seed", "1"]), ("s2", ["--eta", "0.8", "--seed", "2"])):
        assert shell("edit", str(RED_CIRCLE), "--attr", "blue", *STEPS, *extra, "-o", f"{name}.png")[0] == 0
    det, s1, s2 = (_pixels(f"{n}.png").astype(int) for n in ("det", "s1", "s2"))
    assert np.abs(s1 - det).mean() > 0.5 and np.abs(s1 - s2).mean() > 0.5


def test_a_stochastic_batch_does_not_depend_on_the_batch_size(shell):
    Path("in").mkdir()
    for k in range(3):
        shutil.copy(RED_CIRCLE, f"in/c{k}.png")
    for bs in ("1", "3"):
        rc = shell("batch", "in", f"out{bs}", "--attr", "blue", "--eta", "0.6", "--batch-size", bs, *STEPS)[0]
        assert rc == 0
    outs = [_pixels(f"out1/c{k}.png") for k in range(3)]
    for k in range(3):
        assert np.array_equal(outs[k], _pixels(f"out3/c{k}.png"))
    assert not np.array_equal(outs[0], outs[1])  # the same picture, each file its own noise
    # and a batch output is redone from its metadata alone
    assert shell("edit", "in/c1.png", "--from", "out3/c1.png", "-o", "again.png", fresh_cache=True)[0] == 0
    assert np.array_equal(_pixels("again.png"), outs[1])


def test_from_refuses_a_changed_or_missing_attribute(shell, home):
    assert shell("edit", str(RED_CIRCLE), "--attr", "green", *STEPS, "-o", "out.png")[0] == 0
    rc, err = shell("edit", str(RED_CIRCLE), "--from", "out.png", "--attr", "blue", "-o", "x.png")
    assert rc == 2 and "drop --attr" in err
    assert main(["library", "rm", "green"]) == 0
    rc, err = shell("edit", str(RED_CIRCLE), "--from", "out.png", "-o", "x.png")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "green" in err
    # the same name, other weights: refused by sha256
    assert main(["finetune", "--src", "red", "--tgt", "green", "--name", "green", "--seed", "9", *QUICK]) == 0
    rc, err = shell("edit", str(RED_CIRCLE), "--from", "out.png", "-o", "x.png")
    assert rc == 2 and "sha256" in err and not Path("x.png").exists()


def test_from_a_png_without_settings_is_one_line(shell):
    Image.new("RGB", (32, 32)).save("plain.png")
    rc, err = shell("edit", str(RED_CIRCLE), "--from", "plain.png", "-o", "x.png")
    assert rc == 2 and len(err.strip().splitlines()) == 1
