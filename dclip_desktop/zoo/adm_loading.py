"""Loader for class-conditional ADM bases: the denoiser calls model(x, t), so the class label is bound."""

from __future__ import annotations

from ..core.adm import ClassConditioned
from ..core.adm_checkpoint import KNOWN_CONFIGS, load_adm_checkpoint
from . import loading


def load_class_conditioned(spec, device="cpu", dtype=None, offline=None, progress=None):
    weights = loading._checked_weights(spec, offline, progress)
    model = load_adm_checkpoint(weights, KNOWN_CONFIGS[spec.config["adm_config"]], device="cpu")
    return ClassConditioned(model, int(spec.config.get("class_label", 0)))
