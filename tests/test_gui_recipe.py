"""The fine-tune dock's defaults come from the zoo's recipe_for(base, source, target), the one place they
are decided, whether the user picks a preset or types the text pair; a field set by hand stays."""

from __future__ import annotations

import dataclasses

from dclip_desktop.core.finetune import FinetuneConfig
from dclip_desktop.gui.models.finetune import RECIPE_FIELDS, FinetuneModel, FinetuneParams
from dclip_desktop.gui.ui.prompt_panel import PromptPanel
from tests.gui_helpers import recipe_fields as _expected


def _used(panel: PromptPanel) -> dict:
    """The settings the Fine-tune button would hand to the engine (the widgets are bound to the model:
    nothing is copied out of them first)."""
    cfg = panel.model.params.to_request().config
    return {k: getattr(cfg, k) for k in RECIPE_FIELDS}


def test_gui_fallbacks_are_the_engine_defaults():
    gui, engine = FinetuneParams().config, FinetuneConfig()
    assert {k: getattr(gui, k) for k in RECIPE_FIELDS} == {k: getattr(engine, k) for k in RECIPE_FIELDS}
    assert gui == engine


def test_typed_pair_and_preset_take_recipe_for(panel):
    panel.source_edit.setText("circle")  # typed: no preset picked, the kind of edit (shape) decides
    panel.target_edit.setText("triangle")
    assert _used(panel) == _expected("demo-shapes", "circle", "triangle")
    assert panel.t0_spin.value() == 501 and panel.clip_form.currentData() == "dir"
    presets = [panel.preset_combo.itemData(i) for i in range(panel.preset_combo.count())]
    i = next(i for i, pr in enumerate(presets) if pr is not None and pr.name == "Red → blue")
    panel.preset_combo.setCurrentIndex(i)
    panel.preset_combo.activated.emit(i)
    assert (panel.source_edit.text(), panel.target_edit.text()) == ("red", "blue")
    assert _used(panel) == _expected("demo-shapes", "red", "blue")
    assert panel.l1.value() == 1.0 and panel.epochs.value() == 4


def test_fields_set_by_hand_stay_until_set_back(panel):
    panel.source_edit.setText("red")
    panel.target_edit.setText("blue")
    panel.epochs.setValue(2)  # the user's own choice
    panel.t0_slider.setValue(351)  # dragging the slider counts too
    panel.source_edit.setText("gray background")
    panel.target_edit.setText("black background")
    used, recipe = _used(panel), _expected("demo-shapes", "gray background", "black background")
    assert used["epochs"] == 2 and used["t0"] == 351
    assert {k: v for k, v in used.items() if k not in ("epochs", "t0")} == \
        {k: v for k, v in recipe.items() if k not in ("epochs", "t0")}
    assert "set by hand" in panel.epochs.toolTip() and str(recipe["epochs"]) in panel.epochs.toolTip()
    panel.t0_spin.setValue(recipe["t0"])  # back to the recipe's value: it follows the recipe again
    panel.source_edit.setText("circle")
    panel.target_edit.setText("square")
    assert _used(panel)["t0"] == _expected("demo-shapes", "circle", "square")["t0"]
    assert _used(panel)["epochs"] == 2


def test_model_follows_a_real_base_recipe(qapp):
    m = FinetuneModel()
    m.set_prompt(base_id="celebahq", source="face", target="angry face")
    # the preset's t0 and the paper's identity loss on a face base, the rest default
    expected = {**dataclasses.asdict(FinetuneParams().config), "t0": 301, "lambda_face": 0.3}
    assert m.recipe() == {k: expected[k] for k in RECIPE_FIELDS} == _expected("celebahq", "face", "angry face")
    assert m.params.config.t0 == 301 and m.params.config.lambda_face == 0.3
    m.set_prompt(base_id="church", source="church", target="golden church")
    assert m.params.config.lambda_face == 0.0  # no identity loss off faces
