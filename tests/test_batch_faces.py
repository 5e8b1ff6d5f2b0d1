"""`dclip batch --faces`: every face of every photo aligned, edited in shared engine batches and pasted
back into its full-resolution photo (issue 19, the batch part), on the demo base (32², not a face base,
so `--faces on` forces the workflow). The attribute is a random LoRA: these tests check the workflow's
geometry and bookkeeping, not edit quality. tests/data/astronaut.jpg: see tests/test_face_align.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dclip_desktop.cli.main import main
from tests.attributes import save_random_lora

pytest.importorskip("facenet_pytorch")
PHOTO = Path(__file__).parent / "data" / "astronaut.jpg"
SAMPLES = Path(__file__).parent.parent / "resources" / "samples"
STEPS = 3
NO_FACE = "no face found; use --faces off to edit the whole picture"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A library holding 'rnd', a random LoRA on the demo base."""
    from dclip_desktop.jobs.session import Session
    from dclip_desktop.jobs.settings import Settings

    root = tmp_path_factory.mktemp("faces-home")
    session = Session(Settings(device="cpu", precision="fp32", library_dir=str(root / "library"),
                               cache_dir=str(root / "latents")))
    save_random_lora(session, seed=5, std=0.02, steps=STEPS)
    return root


@pytest.fixture(scope="module")
def detector():
    from dclip_desktop.core.face_align import face_detector

    return face_detector()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """One face, two faces (the astronaut and her mirror image), and the demo world's shapes (none)."""
    src = tmp_path_factory.mktemp("faces-in")
    one = Image.open(PHOTO).convert("RGB")
    two = Image.new("RGB", (1024, 512))
    two.paste(one, (0, 0))
    two.paste(one.transpose(Image.FLIP_LEFT_RIGHT), (512, 0))
    (src / "a_astronaut.jpg").write_bytes(PHOTO.read_bytes())
    two.save(src / "b_two.png")
    (src / "c_shapes.png").write_bytes((SAMPLES / "red_circle.png").read_bytes())
    return src


@pytest.fixture
def env(home, monkeypatch, tmp_path):
    monkeypatch.setenv("DCLIP_LIBRARY_DIR", str(home / "library"))
    monkeypatch.setenv("DCLIP_LATENT_CACHE_DIR", str(tmp_path / "latents"))
    return home


def batch(src: Path, out: Path, *extra: str) -> int:
    return main(["--device", "cpu", "--precision", "fp32", "batch", str(src), str(out), "--attr", "rnd",
                 "--s-for", str(STEPS), "--s-gen", str(STEPS), "--batch-size", "2", *extra])


def outside_faces(photo: Image.Image, detector) -> np.ndarray:
    """Where no face's blend mask reaches, in photo pixels."""
    from dclip_desktop.core import face_align as fa

    covered = np.zeros(photo.size[::-1], bool)
    for face in fa.detect_faces(photo, detector):
        m = fa.alignment(face, 32)
        covered |= np.asarray(fa.face_mask(32).transform(photo.size, Image.AFFINE, tuple(m.reshape(-1)),
                                                         resample=Image.BILINEAR)) > 0
    return ~covered


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), int)


def test_a_folder_of_photos_gets_its_faces_edited_at_full_resolution(env, photos, detector, tmp_path, capsys):
    from dclip_desktop.jobs.batch_job import edit_from_metadata, read_manifest
    from dclip_desktop.jobs.metadata import read_metadata
    from dclip_desktop.jobs.session import Session
    from dclip_desktop.jobs.settings import Settings

    out = tmp_path / "out"
    assert batch(photos, out, "--faces", "on") == 1  # a file failed, the others are done
    std = capsys.readouterr()
    assert "done 2, skipped 0, failed 1 (of 3" in std.out
    assert f"failed: c_shapes.png: {NO_FACE}" in std.err
    # the progress line's rate counts the files since its first report, so it is real by the last one
    last = [line for line in std.err.splitlines() if line.startswith("batch: ")][-1]
    assert re.fullmatch(r"batch: 3/3 files  \d+\.\d\d images/s  ETA 0s", last) and " 0.00 " not in last, last
    report = {row["file"]: row for row in json.loads((out / "batch-report.json").read_text())["files"]}
    assert report["c_shapes.png"]["status"] == "failed" and report["c_shapes.png"]["reason"] == NO_FACE
    files = read_manifest(out)["files"]

    outputs = {}
    for name, faces in (("a_astronaut.jpg", 1), ("b_two.png", 2)):
        target = out / files[name]["output"]
        outputs[name] = target
        meta = read_metadata(target)
        assert meta["faces"] == faces and meta["source_image"] == name
        before, after = rgb(photos / name), rgb(target)
        assert after.shape == before.shape  # the photo's own size, not the base's 32²
        diff = np.abs(after - before)
        keep = outside_faces(Image.open(photos / name).convert("RGB"), detector)
        assert 0.5 < keep.mean() < 0.99
        assert diff[keep].max() <= 1  # where no face is, the photo's own pixels
        assert diff[~keep].mean() > 5  # and the faces were edited
    assert sorted(p.name for p in out.glob("*.png")) == ["a_astronaut.png", "b_two.png"]

    # --resume: nothing new to do (the photo without a face is retried, and fails again)
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs.values()}
    assert batch(photos, out, "--faces", "on", "--resume") == 1
    assert "done 0, skipped 2, failed 1 (of 3" in capsys.readouterr().out
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs.values()} == stamps
    # the face workflow is part of the settings: resuming without it is refused before any work
    assert batch(photos, out, "--faces", "off", "--resume") == 2
    assert "changed: faces" in capsys.readouterr().err

    # the metadata reproduces each output exactly, faces found again on the source photo
    session = Session(Settings(device="cpu", precision="fp32", library_dir=str(env / "library"),
                               cache_dir=str(tmp_path / "fresh-latents")))
    for name, target in outputs.items():
        again = edit_from_metadata(session, read_metadata(target), photos / name, detector)
        assert np.asarray(again).tobytes() == np.asarray(Image.open(target).convert("RGB")).tobytes(), name


def test_faces_off_edits_whole_pictures(env, photos, tmp_path, capsys):
    from dclip_desktop.jobs.metadata import read_metadata

    out = tmp_path / "out"
    assert batch(photos, out, "--faces", "off") == 0
    assert "done 3, skipped 0, failed 0" in capsys.readouterr().out
    for target in sorted(out.glob("*.png")):
        assert "faces" not in read_metadata(target)
        with Image.open(target) as im:
            assert im.size == (32, 32)  # the base's square: no face workflow, no paste-back


def test_faces_metadata_is_checked():
    from dclip_desktop.jobs.metadata import MetadataError, check_metadata

    assert check_metadata({"faces": 2})["faces"] == 2
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(MetadataError, match="'faces'"):
            check_metadata({"faces": bad})


def test_batch_offers_the_face_workflow():
    from dclip_desktop.cli.main import build_parser

    assert build_parser().parse_args(["batch", "in", "out", "--attr", "x"]).faces == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["batch", "in", "out", "--attr", "x", "--faces", "maybe"])
