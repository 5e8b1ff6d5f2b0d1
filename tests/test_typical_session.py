"""Issue #16 item 3: the README's "typical session", run verbatim as a new user would, measured by pixels.

The commands are read from README.md itself, so the test proves what the README tells users to type:
`dclip finetune --src red --tgt blue --name blue --sample 24` with nothing else, then the edits.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dclip_desktop.cli.main import main
from dclip_desktop.demo import world
from dclip_desktop.demo.evaluate import colour_progress
from dclip_desktop.jobs.images import load_image
from dclip_desktop.jobs.metadata import read_metadata

pytestmark = pytest.mark.slow  # acceptance: fine-tunes the demo base end to end

ROOT = Path(__file__).resolve().parents[1]


def typical_session() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"A typical session[^\n]*\n(?:[^\n]+\n)*?\s*```bash\n(.*?)```", text, re.S)
    assert block, "README.md lost its typical session"
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line]


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _shape_mask(img: np.ndarray) -> np.ndarray:
    return world.largest_component(world.foreground_mask(img))


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Run every line of the session in a fresh folder holding the repo's samples and a photos/ folder."""
    cwd = tmp_path_factory.mktemp("user")
    shutil.copytree(ROOT / "resources" / "samples", cwd / "resources" / "samples")
    (cwd / "photos").mkdir()
    shutil.copy(ROOT / "resources" / "samples" / "red_circle.png", cwd / "photos" / "photo.png")
    codes = []
    mp = pytest.MonkeyPatch()
    mp.chdir(cwd)
    # A module fixture runs outside conftest's per-test isolation: give the session its own home.
    for var in ("DCLIP_LIBRARY_DIR", "DCLIP_LATENT_CACHE_DIR", "DCLIP_CACHE_DIR", "DCLIP_CONFIG_DIR"):
        mp.setenv(var, str(cwd / ".home" / var.lower()))
    try:
        for argv in typical_session():
            assert argv[0] == "dclip"
            codes.append((argv, main(argv[1:])))
    finally:
        mp.undo()
    return cwd, codes


def test_every_command_succeeds(ran):
    _, codes = ran
    assert [argv[1] for argv, _ in codes] == ["finetune", "edit", "edit", "translate", "batch", "info"]
    assert all(code == 0 for _, code in codes), codes


def test_the_red_circle_comes_out_blue_in_place(ran):
    cwd, _ = ran
    before = _pixels(cwd / "resources" / "samples" / "red_circle.png")
    after = _pixels(cwd / "blue_circle.png")
    mask = _shape_mask(before)
    assert world.dominant_color(after, mask) == "blue"
    out_mask = _shape_mask(after)
    iou = (mask & out_mask).sum() / (mask | out_mask).sum()
    assert iou >= 0.75, iou
    assert read_metadata(cwd / "blue_circle.png")["attributes"][0]["name"] == "blue"


def test_degree_half_lies_between(ran):
    cwd, _ = ran
    src = cwd / "resources" / "samples" / "red_circle.png"
    x = load_image(src, 32).tensor
    mask = _shape_mask(_pixels(src))
    import torch

    m = torch.from_numpy(mask)[None]
    full = colour_progress(load_image(cwd / "blue_circle.png", 32).tensor[None], m, "red", "blue")
    half = colour_progress(load_image(cwd / "halfway.png", 32).tensor[None], m, "red", "blue")
    none = colour_progress(x[None], m, "red", "blue")
    print(f"colour progress red→blue: original {none:.2f}, γ 0.5 {half:.2f}, γ 1 {full:.2f}")
    assert none + 0.1 < half < full - 0.1


def test_stroke_candidates_and_batch_turn_blue(ran):
    cwd, _ = ran
    cands = sorted((cwd / "candidates").glob("*.png"))
    assert len(cands) == 4
    blue = sum(world.dominant_color(img, _shape_mask(img)) == "blue" for img in map(_pixels, cands))
    assert blue >= 3, blue
    edited = _pixels(cwd / "edited" / "photo.png")
    assert world.dominant_color(edited, _shape_mask(_pixels(cwd / "photos" / "photo.png"))) == "blue"
