"""Issue #16 item 1: training images that match the source text, chosen by CLIP from what the base draws.

Measured by pixels on the demo world: the images a fine-tune keeps must show the source colour far more
often than the base's raw samples do (one in four shapes is red).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dclip_desktop.core.zero_shot import contrast_texts, rank_by_source, zero_shot_probs
from dclip_desktop.demo import world
from dclip_desktop.jobs.errors import JobError
from dclip_desktop.jobs.finetune_job import FinetuneRequest, training_images
from dclip_desktop.jobs.session import Session
from dclip_desktop.jobs.settings import Settings
from dclip_desktop.zoo.registry import get_base, recipe_for, vocabulary_for


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-images")
    return Session(Settings(device="cpu", precision="fp32", library_dir=str(root / "lib"),
                            cache_dir=str(root / "lat")))


def test_contrast_is_the_sources_vocabulary():
    colours = ["red", "green", "blue", "yellow"]
    assert contrast_texts("red", "blue", [colours]) == ["red", "blue", "green", "yellow"]
    assert contrast_texts(" Red ", "blue", [colours, ["circle", "square"]]) == ["Red", "blue", "green", "yellow"]
    # a pair outside every vocabulary is told apart from its target only
    assert contrast_texts("face", "angry face", [colours]) == ["face", "angry face"]


def test_ranking_never_puts_a_non_match_above_a_match():
    probs = torch.tensor([[0.45, 0.55], [0.6, 0.4], [0.9, 0.1], [0.2, 0.8]])
    sel = rank_by_source(probs, ["red", "blue"])
    assert sel.matched == 2
    assert sel.order.tolist()[:2] == [2, 1]
    assert sel.best(3).tolist() == [2, 1]  # only the matches, even when more are asked for


def test_recipe_layers_base_kind_and_preset():
    spec = get_base("demo-shapes")
    assert vocabulary_for(spec, "green", "red").kind == "colour"
    assert vocabulary_for(spec, "circle", "triangle").kind == "shape"
    assert recipe_for(spec, "circle", "triangle")["t0"] == vocabulary_for(spec, "circle", "x").t0
    assert recipe_for(spec, "something", "else") == {k: v for k, v in spec.recipe.items()}


def test_demo_clip_reads_the_shape_colour_of_held_out_scenes(session):
    x, _, specs = world.make_scenes(range(world.HELDOUT_SEED_START, world.HELDOUT_SEED_START + 64))
    clip_model, tok = session.clip("demo-tiny")
    colours = list(world.COLORS)
    probs = zero_shot_probs(clip_model, tok, x, colours)
    assert probs.shape == (64, 4) and torch.allclose(probs.sum(1), torch.ones(64), atol=1e-4)
    acc = np.mean([colours[i] == s.color for i, s in zip(probs.argmax(1).tolist(), specs)])
    assert acc >= 0.9, acc


def _share_of(images: torch.Tensor, colour: str) -> float:
    """Share of images whose largest foreground component is mostly `colour` (pixel measure)."""
    hits = 0
    for img in world.to_uint8(images):
        fg = world.largest_component(world.foreground_mask(img))
        hits += bool(fg.any()) and world.dominant_color(img, fg) == colour
    return hits / len(images)


@pytest.mark.slow
def test_sampled_training_images_show_the_source(session):
    req = FinetuneRequest("demo-shapes", "red", "blue", "x", sample_count=11)
    chosen = training_images(session, req, None, None)
    assert chosen.source == "sampled" and chosen.considered == 72 and len(chosen.images) == 12
    assert chosen.texts == ["red", "blue", "green", "yellow"]
    assert f"kept 12 of 72 sampled images: {chosen.matched} look like 'red'" in chosen.summary()
    # what the base draws unfiltered: one shape in four is red
    raw = training_images(session, FinetuneRequest("demo-shapes", "red", "blue", "x", sample_count=71, oversample=1),
                          None, None)
    kept, base_rate = _share_of(chosen.images, "red"), _share_of(raw.images, "red")
    print(f"red among kept {kept:.2f}, among raw samples {base_rate:.2f}")
    assert kept >= 0.75 and kept >= 2.5 * base_rate


def test_photo_filter_refuses_photos_that_do_not_show_the_source(session):
    x, _, _ = world.make_scenes(range(6), color="blue")
    req = FinetuneRequest("demo-shapes", "red", "blue", "x", tensors=x, filter_photos=True)
    with pytest.raises(JobError) as err:
        training_images(session, req, None, None)
    msg = str(err.value)
    assert "\n" not in msg and "of 6 photos look like 'red'" in msg and "turn the filter off" in msg
    # mixed photos: only the red ones are kept
    y, _, specs = world.make_scenes(range(12))
    chosen = training_images(session, FinetuneRequest("demo-shapes", "red", "blue", "x", tensors=y,
                                                      filter_photos=True), None, None)
    reds = sum(s.color == "red" for s in specs)
    assert chosen.matched == reds and _share_of(chosen.images, "red") == 1.0
