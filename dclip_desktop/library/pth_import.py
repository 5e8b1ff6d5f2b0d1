"""Import of the official DiffusionCLIP fine-tuned checkpoints (`human_pixar_t601.pth`, ...).

Those files hold a whole fine-tuned UNet (≈455 MB) as a pickled state dict. `core.checkpoint` reads
them (with `torch.load(weights_only=True)`, which refuses any pickle that would build arbitrary objects
or run code) and unwraps them; the weights are converted to this app's UNet layout when needed and
stored as a delta against the matching base model: per-layer low rank by default, dense with --dense.

A .pth comes with no held-out image, so the rank is measured on a preview generated from fixed noise
(PREVIEW_SEED) in PREVIEW_STEPS DDIM steps, base + delta against base + low-rank delta, with the same
pixel tolerance a full fine-tune's save uses (core/low_rank.py). The pixel rule rather than a
weight-space one: a weight error says nothing of what shows in the image (a 30 % relative error
moved the demo's preview by 0.01 levels). Its cost is one few-step sample per ε tried.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..core import checkpoint, convert
from . import weights as wf
from .errors import LibraryError, first_line
from .names import received_text

# The import's preview: few steps are enough to show whether a truncation changes the image, and
# each ε tried costs one such sample with the base model.
PREVIEW_STEPS = 4
PREVIEW_SEED = 0

# First word of the official file names → (base id, source text).
BASE_GUESSES = {
    "human": ("celebahq", "face"),
    "celeba": ("celebahq", "face"),
    "celebahq": ("celebahq", "face"),
    "face": ("celebahq", "face"),
    "church": ("church", "church"),
    "bedroom": ("bedroom", "bedroom"),
    "dog": ("afhq-dog", "dog"),
    "afhq": ("afhq-dog", "dog"),
    # imagenet_watercolor_t601.pth, ...: DiffusionCLIP's ImageNet style transfers start from "photo"
    "imagenet": ("imagenet-512", "photo"),
}
_NAME_RE = re.compile(r"^(?P<name>.+?)[_-]t(?P<t0>\d{1,3})$", re.IGNORECASE)


def parse_official_name(filename: str) -> dict:
    """What a file name like 'human_pixar_t601.pth' tells: name, t0, target, base and source guesses."""
    stem = Path(filename).stem
    m = _NAME_RE.match(stem)
    name, t0 = (m["name"], int(m["t0"])) if m else (stem, None)
    if t0 is not None and not 0 < t0 < 1000:
        t0 = None
    words = [w for w in re.split(r"[_\-\s]+", name) if w]
    base_id, source = BASE_GUESSES.get(words[0].lower(), (None, None)) if words else (None, None)
    target_words = words[1:] if base_id and len(words) > 1 else words
    return {"name": name, "t0": t0, "target": " ".join(target_words) or None, "base_id": base_id,
            "source": source}


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        return checkpoint.read_state_dict(path)
    except checkpoint.CheckpointError as exc:  # its message names the file already
        raise LibraryError(str(exc)) from None


def to_base_layout(state: dict[str, torch.Tensor], base_model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint keyed like `base_model`'s parameters: as is when the names already match
    (diffusers UNet2DModel, or ADM for AFHQ-dog and ImageNet-512), converted when in the original DDPM layout."""
    names = {n for n, _ in base_model.named_parameters()}
    if names <= state.keys():
        return state
    if not convert.is_original_layout(state):
        raise LibraryError(f"{path.name}: unrecognised checkpoint layout (its keys match neither the base "
                           "model nor the original DDPM code)")
    try:
        return convert.convert_original_state_dict(state)
    except (KeyError, IndexError, ValueError, RuntimeError) as exc:  # a partial or odd original layout
        raise LibraryError(f"{path.name}: its keys look like the original DDPM code's but do not convert "
                           f"({first_line(exc)})") from None


def _image_shape(model: nn.Module) -> Optional[tuple[int, int, int]]:
    """(C, H, W) of the images `model` generates: diffusers' sample_size or ADM's image_size."""
    cfg = getattr(model, "config", None)
    size = getattr(cfg, "sample_size", None) or getattr(cfg, "image_size", None)
    channels = getattr(cfg, "in_channels", 3)
    if isinstance(size, (tuple, list)):
        size = size[0]
    return (int(channels), int(size), int(size)) if isinstance(size, int) else None


def _storage(delta: dict[str, torch.Tensor], base_model: nn.Module, dense: bool) -> tuple[dict, str, dict]:
    """(weights, kind, storage record) for an imported delta."""
    from ..core.finetune import sample_from_noise, sample_noise
    from ..core.low_rank import renderer

    shape = _image_shape(base_model)
    if dense or shape is None:
        why = "dense requested (--dense)" if dense else "the base's image size is unknown: no preview to measure"
        return delta, "full_delta", {"kind": "full_delta", "criterion": why}
    device = next(base_model.parameters()).device
    noise = sample_noise(1, shape, PREVIEW_SEED).to(device)

    def preview(model: nn.Module) -> torch.Tensor:
        return sample_from_noise(model, noise, steps=PREVIEW_STEPS)

    return wf.compact_delta(delta, renderer(base_model, preview),
                            f"{PREVIEW_STEPS}-step sample from fixed noise (seed {PREVIEW_SEED}) vs the dense delta's")


def import_official_pth(path, lib, base_id: Optional[str] = None, base_model: Optional[nn.Module] = None,
                        name: Optional[str] = None, base_sha256: Optional[str] = None, dense: bool = False):
    """Import an official fine-tuned .pth into `lib` (low-rank unless `dense`, see the module's
    docstring); returns the new entry."""
    path = Path(path)
    guess = parse_official_name(path.name)
    # The file name is not something the user typed: control or bidi characters in it are kept as escapes.
    guess.update(name=received_text(guess["name"]), target=received_text(guess["target"]))
    base_id = base_id or guess["base_id"]
    if base_id is None:
        raise LibraryError(f"cannot tell the base model of {path.name} from its name; pass --base "
                           "(e.g. celebahq, church, bedroom, afhq-dog, imagenet-512)")
    name = name or guess["name"]
    if lib.find(name) is not None:
        raise LibraryError(f"an attribute named '{name}' already exists; import with --name NEW_NAME")
    state = _load_state_dict(path)
    if base_model is None:
        from ..zoo.loading import load_base

        base_model = load_base(base_id, "cpu")
    state = to_base_layout(state, base_model, path)
    delta, missing = {}, []
    for pname, p in base_model.named_parameters():
        tuned = state.get(pname)
        if tuned is None:
            missing.append(pname)
            continue
        if not tuned.is_floating_point():
            raise LibraryError(f"{path.name}: '{pname}' is stored as {str(tuned.dtype).replace('torch.', '')}, "
                               "not floating point; the file is not imported")
        if tuned.shape != p.shape:
            raise LibraryError(f"{path.name} does not fit base '{base_id}': '{pname}' has shape "
                               f"{tuple(tuned.shape)}, the base has {tuple(p.shape)}")
        d = tuned.detach().float() - p.detach().float().cpu()
        if torch.any(d != 0):
            delta[pname] = d
    if missing:
        raise LibraryError(f"{path.name} does not fit base '{base_id}': {len(missing)} parameters missing "
                           f"(first: {missing[0]})")
    if not delta:
        raise LibraryError(f"{path.name} is identical to base '{base_id}': nothing to import")
    # NaN weights, or a "fine-tune" that is really another model: refused before anything is written.
    lib.check_import(path, "full_delta", delta, base_id, base_model)
    if base_sha256 is None:
        try:
            from ..zoo.loading import base_sha256 as zoo_sha

            base_sha256 = zoo_sha(base_id)
        except Exception:  # base not installed or unknown to the zoo: record it as unknown
            base_sha256 = None
    meta = {
        "base_id": base_id, "base_sha256": base_sha256, "source": guess["source"], "target": guess["target"],
        "t0": guess["t0"], "s_for": 40, "s_gen": 6, "lambdas": None, "lr": None, "lr_schedule": None,
        "epochs": None, "mode": None, "lora_rank": None, "seed": None,
        "imported": {"from": path.name, "format": "official DiffusionCLIP .pth",
                     "guessed": [k for k in ("source", "target", "t0") if guess[k] is not None]},
    }
    weights, kind, meta["storage"] = _storage(delta, base_model, dense)
    return lib.save_attribute(name, weights, kind, meta)
