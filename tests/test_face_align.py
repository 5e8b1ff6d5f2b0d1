"""Face alignment and paste-back on a real photo (issue 19, build item 3).

tests/data/astronaut.jpg is NASA's portrait of Eileen Collins (public domain, NASA image S94-44849),
as scikit-image ships it (skimage/data/astronaut.png), re-encoded as JPEG. MTCNN's weights ship in
the facenet-pytorch wheel, so this runs offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dclip_desktop.core import face_align as fa

pytest.importorskip("facenet_pytorch")
PHOTO = Path(__file__).parent / "data" / "astronaut.jpg"


@pytest.fixture(scope="module")
def detector():
    return fa.face_detector()


@pytest.fixture(scope="module")
def photo():
    return Image.open(PHOTO).convert("RGB")


def test_the_similarity_fit_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.random.default_rng(0).uniform(0, 100, (5, 2))
    m = fa.similarity_transform(src, src @ rot.T + shift)
    assert np.allclose(m[:, :2], rot, atol=1e-9) and np.allclose(m[:, 2], shift, atol=1e-9)
    assert np.allclose(fa.apply(fa.invert(m), fa.apply(m, src)), src)


def test_aligned_landmarks_land_where_the_template_puts_them(photo, detector):
    [face] = fa.detect_faces(photo, detector)
    aligned, m = fa.align(photo, face, 256)
    assert aligned.size == (256, 256)
    [again] = fa.detect_faces(aligned, detector)
    # the warp is right: MTCNN finds each landmark within 3 px of where the fitted transform sends it
    assert np.linalg.norm(again.landmarks - fa.apply(m, face.landmarks), axis=1).max() < 3.0
    # and the face sits on the template. A least-squares fit of 5 points cannot land all five on any
    # one face (this one smiles: a wide mouth pulls the fit down); measured, the eyes' midpoint is
    # 3.0 px from the template's, the five landmarks 5.4 px on average.
    eyes, tmpl = again.landmarks[:2], fa.template(256)[:2]
    assert np.linalg.norm(eyes.mean(0) - tmpl.mean(0)) < 4.0
    assert np.linalg.norm(again.landmarks - fa.template(256), axis=1).mean() < 7.0
    assert abs(np.linalg.norm(eyes[1] - eyes[0]) / np.linalg.norm(tmpl[1] - tmpl[0]) - 1) < 0.06  # measured 3.9 %


def test_an_identity_edit_pasted_back_leaves_the_rest_of_the_photo_alone(photo, detector):
    [face] = fa.detect_faces(photo, detector)
    aligned, m = fa.align(photo, face, 256)
    out = fa.paste_back(photo, aligned, m)
    diff = np.abs(np.asarray(out, int) - np.asarray(photo, int))
    mask = np.asarray(fa.face_mask(256).transform(photo.size, Image.AFFINE, tuple(m.reshape(-1)),
                                                  resample=Image.BILINEAR))
    assert 0.02 < (mask > 0).mean() < 0.5  # the mask covers the face, not the photo
    assert diff[mask == 0].max() <= 1
    assert diff[mask > 0].mean() < 2.0  # two bicubic resamplings of the same face
    assert np.asarray(photo).tobytes() == np.asarray(Image.open(PHOTO).convert("RGB")).tobytes()


def test_a_photo_with_two_faces_gets_two_edits(photo, detector):
    two = Image.new("RGB", (1024, 512))
    two.paste(photo, (0, 0))
    two.paste(photo.transpose(Image.FLIP_LEFT_RIGHT), (512, 0))
    faces = fa.detect_faces(two, detector)
    assert len(faces) == 2 and faces[0].box[0] < 512 <= faces[1].box[0]
    out = two
    for face in faces:  # a visible edit: the aligned face inverted
        aligned, m = fa.align(two, face, 256)
        out = fa.paste_back(out, Image.eval(aligned, lambda v: 255 - v), m)
    diff = np.abs(np.asarray(out, int) - np.asarray(two, int)).sum(2)
    for face in faces:
        x1, y1, x2, y2 = (int(v) for v in face.box)
        assert diff[y1:y2, x1:x2].mean() > 50  # each face changed
    assert diff[:, 500:524].max() == 0  # the strip between them did not


def test_a_photo_without_a_face_finds_none(detector):
    assert fa.detect_faces(Image.new("RGB", (300, 200), (90, 140, 200)), detector) == []


def test_the_edit_job_edits_each_face_through_the_diffusion_and_keeps_the_photo_size(photo, detector):
    """jobs/face_edit with a real inversion and generation (the demo base at 32²): the faces change,
    the photo keeps its size and everything outside the faces."""
    import torch

    from dclip_desktop.jobs.edit_job import reconstruct_tensor
    from dclip_desktop.jobs.face_edit import edit_faces
    from dclip_desktop.jobs.session import Session
    from dclip_desktop.jobs.settings import Settings

    session = Session(Settings(device="cpu", precision="fp32", offline=True))
    seen = []

    def edit(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return reconstruct_tensor(session, "demo-shapes", x, 400, 4, 4)[0]

    two = Image.new("RGB", (1024, 512))
    two.paste(photo, (0, 0))
    two.paste(photo, (512, 0))
    out, count = edit_faces(two, "two.png", 32, edit, detector)
    assert count == 2 and seen == [(2, 3, 32, 32)] and out.size == two.size
    diff = np.abs(np.asarray(out, int) - np.asarray(two, int)).sum(2)
    assert diff[:, 500:524].max() == 0 and diff[:10].max() == 0 and diff[-60:].max() == 0
    assert diff[60:180, 180:270].mean() > 5 and diff[60:180, 692:782].mean() > 5


def test_a_photo_without_a_face_is_one_line_that_says_what_to_do(detector):
    from dclip_desktop.jobs.errors import JobError
    from dclip_desktop.jobs.face_edit import edit_faces, faces_wanted

    with pytest.raises(JobError, match="sky.png: no face found; use --faces off"):
        edit_faces(Image.new("RGB", (300, 200), (90, 140, 200)), "sky.png", 32, lambda x: x, detector)
    assert faces_wanted("auto", "face") and not faces_wanted("auto", "shapes") and not faces_wanted("off", "face")
    with pytest.raises(JobError, match="unknown --faces"):
        faces_wanted("maybe", "face")


@pytest.mark.parametrize("argv, expected", [
    (["--base", "celebahq", "--src", "face", "--tgt", "angry face"], 0.3),  # the paper's λ_face on faces
    (["--base", "celebahq", "--src", "face", "--tgt", "angry face", "--lambda-face", "0"], 0.0),
    (["--src", "red", "--tgt", "blue"], 0.0),  # the demo world has no faces
])
def test_finetune_on_a_face_base_keeps_the_identity_by_default(argv, expected):
    from dclip_desktop.cli.edit_cmds import _config_from_args
    from dclip_desktop.cli.main import build_parser
    from dclip_desktop.zoo.registry import get_base, recipe_for

    args = build_parser().parse_args(["finetune", "--name", "x", *argv])
    assert _config_from_args(args, recipe_for(get_base(args.base), args.src, args.tgt)).lambda_face == expected


def test_dclip_edit_offers_the_face_workflow():
    from dclip_desktop.cli.main import build_parser

    args = build_parser().parse_args(["edit", "a.jpg", "--attr", "x", "-o", "out"])
    assert args.faces == "auto"
