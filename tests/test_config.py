"""core.config: the job settings and their rules, one home shared by the engine, the CLI and the GUI,
importable without torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from dclip_desktop.core import config
from dclip_desktop.core.config import (
    WEIGHT_TOLERANCE,
    FinetuneConfig,
    WeightSchedule,
    check_prompt,
    config_from_recipe,
    validate_degree,
)
from dclip_desktop.errors import BadInput


@pytest.mark.parametrize("module", [
    "dclip_desktop.core.config",
    "dclip_desktop.gui.models.finetune",
    "dclip_desktop.gui.models.mixing",
])
def test_importing_pulls_no_torch(module):
    code = f"import sys, {module}\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_engine_modules_use_the_shared_names():
    from dclip_desktop.core import finetune, mixing, schedule

    assert finetune.FinetuneConfig is FinetuneConfig
    assert mixing.WeightSchedule is WeightSchedule and mixing.validate_degree is validate_degree
    assert schedule.validate_t0 is config.validate_t0 and schedule.validate_steps is config.validate_steps
    assert schedule.T == config.T == schedule.DEFAULT_SCHEDULE.num_steps


# --- the recipe merge ---------------------------------------------------------------------------
def test_user_wins_then_recipe_then_defaults():
    recipe = {"t0": 501, "lambda_l1": 3.0, "epochs": 4}
    cfg = config_from_recipe(recipe, {"epochs": 2, "seed": 7})
    assert (cfg.epochs, cfg.seed) == (2, 7)  # set by the user
    assert (cfg.t0, cfg.lambda_l1) == (501, 3.0)  # left unset: the recipe's
    defaults = FinetuneConfig()
    assert (cfg.lr, cfg.clip_loss_form, cfg.s_gen) == (defaults.lr, defaults.clip_loss_form, defaults.s_gen)
    assert config_from_recipe({}) == defaults


def test_a_none_the_user_set_is_kept():
    # lr None is "auto" and lora_rank None is "full weights": choices, not gaps for the recipe to fill
    cfg = config_from_recipe({"lr": 5e-4}, {"lr": None, "lora_rank": None})
    assert cfg.lr is None and cfg.lora_rank is None


def test_merge_does_not_touch_its_inputs():
    recipe, user = {"t0": 301}, {"epochs": 3}
    config_from_recipe(recipe, user)
    assert recipe == {"t0": 301} and user == {"epochs": 3}


def test_cli_and_gui_merge_alike():
    """`dclip finetune` with only the text pair and the GUI with only the text pair train the same."""
    from types import SimpleNamespace

    from dclip_desktop.cli.edit_cmds import _config_from_args
    from dclip_desktop.gui.models.finetune import FinetuneModel
    from dclip_desktop.zoo.registry import get_base, recipe_for

    args = SimpleNamespace(t0=None, lambda_l1=None, epochs=3, lr=None, clip_loss_form=None, s_for=40, s_gen=6,
                           lambda_face=0.0, lambda_clip=3.0, lr_schedule="constant", mode="efficient", rank=8,
                           full=False, batch_size=8, seed=0)
    cli = _config_from_args(args, recipe_for(get_base("demo-shapes"), "circle", "triangle"))
    m = FinetuneModel()
    m.set_prompt(source="circle", target="triangle")
    m.set_by_hand("epochs", 3)
    assert cli == m.params.config
    assert cli.t0 == 501 and cli.clip_loss_form == "dir" and cli.epochs == 3


# --- the prompt ---------------------------------------------------------------------------------
@pytest.mark.parametrize("source, target, name, message", [
    ("", "blue", "x", "source and target text must not be empty"),
    ("red", "  ", "x", "source and target text must not be empty"),
    ("red ", " red", "x", "source and target text are the same: there is no direction to learn"),
    ("red", "blue", " ", "give the attribute a name"),
])
def test_prompt_check_messages(source, target, name, message):
    with pytest.raises(BadInput) as err:
        check_prompt(source, target, name)
    assert str(err.value) == message


def test_gui_and_job_refuse_a_prompt_with_the_same_message():
    from dclip_desktop.gui.models.finetune import FinetuneParams
    from dclip_desktop.jobs.finetune_job import FinetuneRequest

    check_prompt("red", "blue", "blue")
    for source, target, name in (("red", "red", "x"), ("", "blue", "x"), ("red", "blue", "")):
        with pytest.raises(BadInput) as err:
            FinetuneRequest("demo-shapes", source, target, name).validate()
        assert FinetuneParams(source=source, target=target, name=name).validate() == str(err.value)
    assert FinetuneParams(source="red", target="blue", name="blue").validate() is None


def test_gui_refuses_bad_settings_as_the_engine_does():
    from dclip_desktop.gui.models.finetune import FinetuneParams

    bad = FinetuneConfig(s_for=1)
    with pytest.raises(BadInput) as err:
        bad.validate()
    assert FinetuneParams(source="red", target="blue", name="b", config=bad).validate() == str(err.value)


@pytest.mark.parametrize("change, message", [
    ({"t0": 0}, "t0 must be"),
    ({"s_gen": 1}, "S_gen"),
    ({"mode": "fast"}, "mode must be"),
    ({"lr_schedule": "cosine"}, "lr schedule"),
    ({"clip_loss_form": "l2"}, "CLIP loss form"),
    ({"epochs": 0}, "epochs"),
    ({"lr": float("nan")}, "learning rate"),
    ({"lambda_l1": float("nan")}, "lambda_l1"),
])
def test_config_errors_are_bad_input(change, message):
    with pytest.raises(BadInput, match=message):
        FinetuneConfig(**change).validate()


# --- the GUI's params ---------------------------------------------------------------------------
def test_gui_params_hold_the_engine_defaults():
    from dclip_desktop.gui.models.finetune import FinetuneParams

    assert FinetuneParams().config == FinetuneConfig()


def test_gui_params_copy_owns_its_config():
    """tasks.make_finetune copies the params with dataclasses.replace: later edits in the GUI must not
    reach the job that was submitted."""
    from dclip_desktop.gui.models.finetune import FinetuneParams

    p = FinetuneParams(source="red", target="blue", name="b")
    submitted = dataclasses.replace(p)
    p.config.epochs = 9
    assert submitted.config.epochs == FinetuneConfig().epochs


def test_gui_model_update_reaches_the_config(qapp):
    from dclip_desktop.gui.models.finetune import FinetuneModel

    m = FinetuneModel()
    m.update(name="b", s_for=12, lora_rank=None)
    assert (m.params.name, m.params.config.s_for, m.params.config.lora_rank) == ("b", 12, None)
    with pytest.raises(AttributeError):
        m.update(no_such_field=1)


# --- mixing weights -----------------------------------------------------------------------------
def test_the_tolerance_is_core_s_1e_3():
    assert WEIGHT_TOLERANCE == 1e-3


def _gui_mix(weights, use_schedule):
    from types import SimpleNamespace

    from dclip_desktop.gui.models.mixing import MixingModel

    m = MixingModel()
    m.set_entries([SimpleNamespace(id=f"id{i}", name=f"a{i}", t0=400, base_id="demo-shapes", source="red",
                                   target=f"a{i}") for i in range(len(weights))])
    for i, w in enumerate(weights):
        m.set_checked(f"a{i}", True, share=False)
        m.set_weight(f"a{i}", w)
    if use_schedule:
        m.set_use_schedule(True)
        m.schedule = [[500, list(weights)], [0, list(weights)]]
    return m.validate()


@pytest.mark.parametrize("use_schedule", [False, True])
@pytest.mark.parametrize("off, accepted", [(5e-4, True), (-5e-4, True), (2e-3, False), (-2e-3, False)])
def test_gui_and_engine_share_one_tolerance(qapp, off, accepted, use_schedule):
    weights = [0.5, 0.5 + off]
    try:
        WeightSchedule.of([(500, weights), (0, weights)]).validate(2)
        engine = True
    except BadInput:
        engine = False
    gui = _gui_mix(weights, use_schedule)
    assert engine is accepted
    assert (gui is None) is accepted
    if not accepted:
        assert "sum to 1" in gui


def test_gui_shows_the_engine_message_for_a_schedule(qapp):
    weights = [0.7, 0.7]
    with pytest.raises(BadInput) as err:
        WeightSchedule.of([(500, weights), (0, weights)]).validate(2)
    assert _gui_mix(weights, use_schedule=True) == str(err.value)


def test_gui_refuses_the_degree_the_engine_refuses(qapp):
    from types import SimpleNamespace

    from dclip_desktop.gui.models.mixing import MixingModel

    m = MixingModel()
    m.set_entries([SimpleNamespace(id="id0", name="a", t0=400, base_id="demo-shapes", source="r", target="a")])
    m.set_checked("a", True)
    for degree in (1.5, float("nan"), -0.1):
        m.set_degree(degree)
        with pytest.raises(BadInput) as err:
            validate_degree(degree)
        assert m.validate() == str(err.value)
    m.set_degree(0.5)
    assert m.validate() is None


@pytest.mark.parametrize("rows", [
    "[[0, [1]]]",
    [(0, [True])],
    [(0, [float("inf")])],
    [(1000, [1.0])],
    [(0, "1")],
    [[0]],
])
def test_bad_rows_are_bad_input(rows):
    with pytest.raises(BadInput):
        WeightSchedule.of(rows).validate(1)


def test_no_positive_weight_is_bad_input():
    with pytest.raises(BadInput, match="no positive weight"):
        WeightSchedule.by_t0([600, 300], [1.0, 0.0])


@pytest.mark.parametrize("n, ok", [(2, True), (1000, True), (1, False), (1001, False), (True, False), (40.0, False)])
def test_step_counts_have_one_range_for_settings_and_png_metadata(n, ok):
    from dclip_desktop.jobs.metadata import MetadataError, check_metadata

    if ok:
        config.validate_steps(n, "S_for")
        assert check_metadata({"s_for": n})["s_for"] == n
    else:
        with pytest.raises(BadInput, match="S_for"):
            config.validate_steps(n, "S_for")
        with pytest.raises(MetadataError):
            check_metadata({"s_for": n})
