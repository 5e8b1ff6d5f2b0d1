"""Import of the official DiffusionCLIP fine-tuned checkpoints (`human_pixar_t601.pth`, ...).

Those files hold a whole fine-tuned UNet (≈455 MB) as a pickled state dict. `core.checkpoint` reads
them (with `torch.load(weights_only=True)`, which refuses any pickle that would build arbitrary objects
or run code) and unwraps them; the weights are converted to this app's UNet layout when needed and
stored as a compact fp16 delta against the matching base model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..core import checkpoint, convert
from .errors import LibraryError, first_line
from .names import received_text

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


def import_official_pth(path, lib, base_id: Optional[str] = None, base_model: Optional[nn.Module] = None,
                        name: Optional[str] = None, base_sha256: Optional[str] = None):
    """Import an official fine-tuned .pth into `lib` as a full fp16 delta; returns the new entry."""
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
    return lib.save_attribute(name, delta, "full_delta", meta)
