"""`dclip models add BASE FILE`: install a base's weights from a file the user brings.

Some weights have no download source (ILVR's AFHQ-dog), and some users already hold a file
(SDEdit's `celeba_hq.ckpt`, the file DiffusionCLIP itself loads). The file is checked against the
base's architecture first, strictly (every key, every shape), in whichever layout it comes:
- diffusers' `UNet2DModel` (safetensors or `.bin`; the hub's old attention names pass, the loader
  renames them);
- the original DDPM code's (`core/convert.py` converts it and the result is stored as safetensors);
- guided-diffusion's ADM (`core/adm.py` builds the same names).

Only then does it go into the folder `download.model_dir` names, under the name the loader reads:
hard-linked when on the same filesystem, else copied, renamed into place atomically, with its
sha256 in the sidecar a download writes. `loading.load_base` then loads it offline. Everything is
read through `core/checkpoint.py` (weights only: no code in a pickle runs).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..core import checkpoint, convert
from ..core.adm_checkpoint import KNOWN_CONFIGS, expected_shapes, match_config, mismatches
from ..errors import BadInput
from . import download, registry
from .loading import weights_file

__all__ = ["Added", "WrongArchitecture", "add_base_file"]

# diffusers' old attention names (the hub's DDPM-256 files): from_pretrained renames them on load.
_OLD_ATTENTION = re.compile(r"\.(query|key|value|proj_attn)\.(weight|bias)$")
_NEW_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_DIFFUSERS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


class WrongArchitecture(checkpoint.CheckpointError):
    """A readable weights file whose keys or shapes are not the base's."""


@dataclass(frozen=True)
class Added:
    path: Path  # the installed file
    sha256: str
    layout: str  # how the file was read: "diffusers", "original DDPM (converted)", "ADM"


@dataclass(frozen=True)
class _Plan:
    name: str  # the file name in the cache folder
    layout: str
    source: Optional[Path] = None  # copied or linked as is
    state: Optional[dict] = None  # or written as safetensors (a converted or unwrapped file)


def _first_mismatch(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple]) -> Optional[str]:
    """The first key or shape a strict load would trip on, and how many more there are; None if it fits."""
    missing, unexpected, _ = mismatches(state, expected)
    problems = [f"'{k}' is missing" for k in missing] + [f"'{k}' is not in the model" for k in unexpected]
    problems += [f"'{k}' has shape {tuple(state[k].shape)}, the model {shape}"
                 for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape]
    if not problems:
        return None
    return problems[0] + (f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else "")


def _refuse(src: Path, spec, what: str, first: str, hint: str = ""):
    raise WrongArchitecture(f"{src.name} does not fit {spec.id} ({what}): first difference: {first}{hint}")


def _adm_plan(spec, src: Path, state: dict) -> _Plan:
    name = spec.config.get("adm_config")
    if name not in KNOWN_CONFIGS:
        raise BadInput(f"ADM base '{spec.id}' needs config['adm_config'] in {sorted(KNOWN_CONFIGS)}")
    first = _first_mismatch(state, expected_shapes(KNOWN_CONFIGS[name]))
    if first:
        fits = match_config(state)
        _refuse(src, spec, f"ADM config '{name}'", first, f"; it fits ADM config '{fits}'" if fits else "")
    # load_adm_checkpoint unwraps the file the same way again: it is stored as it came
    return _Plan(weights_file(spec).name, "ADM", source=src)


def _diffusers_shapes(config: Mapping) -> dict[str, tuple]:
    from diffusers.models.unets.unet_2d import UNet2DModel

    with torch.device("meta"):
        model = UNet2DModel(**config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _is_safetensors(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt"):
            return True
    except Exception:  # noqa: BLE001 - anything safetensors cannot open is not one
        return False


def _ddpm_plan(spec, src: Path, raw: object, state: dict) -> _Plan:
    expected = _diffusers_shapes(spec.config)
    if convert.is_original_layout(state):
        try:
            converted = convert.convert_original_state_dict(state, spec.config)
        except checkpoint.CheckpointError as exc:
            _refuse(src, spec, "the original DDPM layout", _line(exc))
        first = _first_mismatch(converted, expected)
        if first:
            _refuse(src, spec, "the original DDPM layout, converted", first)
        return _Plan(_DIFFUSERS[0], "original DDPM (converted)",
                     state={k: v.contiguous() for k, v in converted.items()})
    renamed = {_OLD_ATTENTION.sub(lambda m: f".{_NEW_ATTENTION[m[1]]}.{m[2]}", k): v for k, v in state.items()}
    first = _first_mismatch(renamed, expected)
    if first:
        _refuse(src, spec, "diffusers UNet2DModel", first)
    if isinstance(raw, Mapping) and list(raw) == list(state):  # a flat file the loader reads as it is
        return _Plan(_DIFFUSERS[0] if _is_safetensors(src) else _DIFFUSERS[1], "diffusers", source=src)
    # wrapped or prefixed (a training checkpoint): stored unwrapped, which is what from_pretrained reads
    return _Plan(_DIFFUSERS[0], "diffusers", state={k: v.contiguous() for k, v in state.items()})


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _expected_text(spec) -> str:
    f = weights_file(spec)
    names = f.name + (f" or {f.alternative}" if f.alternative else "")
    where = f" ({spec.manual_source})" if getattr(spec, "manual_source", "") else ""
    return f"{spec.id} expects {names}{where}"


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError as exc:  # another filesystem, or one without hard links
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        shutil.copyfile(src, dest)


def _write_config(spec, folder: Path) -> None:
    """config.json from the registry's architecture, for a diffusers base whose folder has none."""
    path = folder / "config.json"
    if path.is_file() or not spec.config:
        return
    tmp = path.with_name(path.name + ".adding")
    tmp.write_text(json.dumps({"_class_name": "UNet2DModel", **spec.config}, indent=2))
    os.replace(tmp, path)
    download.write_sidecar(path, download.sha256_file(path))


def _clear(folder: Path, name: str) -> None:
    """A replaced file of this base, its sidecar and partial download: gone."""
    path = folder / name
    for p in (path, download.sidecar_path(path), path.with_name(path.name + download.PART_SUFFIX)):
        p.unlink(missing_ok=True)


def _made_dirs(folder: Path) -> Optional[Path]:
    """Create `folder`; the topmost folder this created (None if it was there), to remove on failure."""
    top = None
    for p in (folder, *folder.parents):
        if p.exists():
            break
        top = p
    folder.mkdir(parents=True, exist_ok=True)
    return top


def _remove_empty(folder: Path, top: Optional[Path]) -> None:
    for p in (folder, *folder.parents) if top is not None else ():
        if any(p.iterdir()):
            return
        p.rmdir()
        if p == top:
            return


def _install(spec, plan: _Plan, cancel) -> Added:
    folder = download.model_dir(spec)
    created = _made_dirs(folder)
    dest = folder / plan.name
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.adding")  # a name of its own: nothing shows it meanwhile
    try:
        tmp.unlink(missing_ok=True)
        if plan.state is not None:
            from safetensors.torch import save_file

            save_file(plan.state, str(tmp))
        else:
            _link_or_copy(plan.source, tmp)
        sha = download.sha256_file(tmp, cancel)
        pinned = next((f.pinned_sha256(plan.name) for f in spec.files if f.pinned_sha256(plan.name)), None)
        if pinned and sha != pinned.lower():
            raise BadInput(f"{plan.source.name if plan.source else plan.name} is not {spec.id}'s published "
                           f"{plan.name} (sha256 {sha[:12]}…, the published one is {pinned[:12]}…)")
        if spec.arch == "ddpm":
            _write_config(spec, folder)
        download.sidecar_path(dest).unlink(missing_ok=True)
        os.replace(tmp, dest)
        download.write_sidecar(dest, sha)
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_empty(folder, created)
        raise
    for f in spec.files:  # a weights file of the other name (.bin / .safetensors) would shadow this one
        if f.weights:
            for name in {f.name, f.alternative} - {None, plan.name}:
                _clear(folder, name)
    return Added(dest, sha, plan.layout)


def add_base_file(base, file, cancel=None) -> Added:
    """Check `file` against `base`'s architecture and install it into the cache as that base's weights.

    Refused with one line: a missing file (naming the file the base expects), an unreadable or unsafe one
    (`core/checkpoint.py`), or one of another architecture (`WrongArchitecture`: the first difference)."""
    spec = registry.get_base(base)
    if spec.is_demo:
        raise BadInput(f"{spec.id} ships with the app: it has no weights file to add")
    src = Path(file)
    if not src.is_file():
        raise checkpoint.CheckpointNotFound(f"{src}: no such file; {_expected_text(spec)}")
    raw = checkpoint.read_checkpoint(src)
    state = checkpoint.unwrap(raw, src.name)
    if spec.arch == "adm":
        plan = _adm_plan(spec, src, state)
    elif spec.arch == "ddpm":
        plan = _ddpm_plan(spec, src, raw, state)
    else:
        raise BadInput(f"base '{spec.id}': unsupported arch '{spec.arch}'")
    return _install(spec, plan, cancel)
