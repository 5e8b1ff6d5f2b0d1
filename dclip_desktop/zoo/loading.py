"""Load the zoo's models: diffusion bases, CLIP (open_clip) and the face net (facenet-pytorch).

Weights come from the app cache (fetched by `download.py` unless offline, or installed from the user's
own file by `add_file.py`) and are checked against their recorded sha256 before use. Heavy libraries
(open_clip, facenet-pytorch, diffusers) are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ..errors import BadInput
from . import download, registry
from .registry import BaseSpec

Device = Union[str, torch.device]
_SHA_CACHE: dict[tuple, str] = {}


def _spec(spec_or_id) -> BaseSpec:
    return registry.get_base(spec_or_id)


def weights_file(spec) -> registry.FileSpec:
    for f in spec.files:
        if f.weights:
            return f
    raise BadInput(f"'{spec.id}' lists no weights file")


def _checked_weights(spec, offline: Optional[bool], progress) -> Path:
    """The model's weights file in the cache (downloaded if allowed), verified against its sha256."""
    download.ensure(spec, progress=progress, offline=offline)
    f = weights_file(spec)
    path = download.local_file(spec, f)
    if path is None:  # ensure() succeeded, so this only happens if the file vanished meanwhile
        raise download.MissingWeightsError(
            f.name, spec.id, download.model_dir(spec) / f.name, "the file vanished"
        )
    ok, reason = download.verify(path, f.pinned_sha256(path.name))
    if not ok:
        raise download.ChecksumError(
            f"{reason} in {path.parent}. The cached file is damaged; repair it with: "
            f"{download.download_command(spec.id)} (it re-downloads damaged files)"
        )
    return path


def _demo_unet_dir() -> Path:
    from ..demo.tiny_clip import UNET_SUBDIR, demo_dir

    return demo_dir() / UNET_SUBDIR


def _cached_sha(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = download.sha256_file(path)
    return _SHA_CACHE[key]


# --- diffusion bases ----------------------------------------------------------------------------
def load_base(
    spec_or_id,
    device: Device = "cpu",
    dtype: Optional[torch.dtype] = None,
    offline: Optional[bool] = None,
    progress=None,
) -> nn.Module:
    """The base's ε-prediction UNet on `device` (eval mode, frozen), weights in `dtype` (default fp32)."""
    spec = _spec(spec_or_id)
    if spec.loader:
        module, _, func = spec.loader.partition(":")
        fn = getattr(importlib.import_module(module), func)
        model = fn(spec, device=device, dtype=dtype, offline=offline, progress=progress)
    elif spec.is_demo:
        from ..demo.tiny_clip import load_demo_unet

        model = load_demo_unet(device)
    elif spec.arch == "ddpm":
        from diffusers.models.unets.unet_2d import UNet2DModel

        weights = _checked_weights(spec, offline, progress)
        # from_pretrained renames the hub files' old attention keys (query/key/value/proj_attn).
        model = UNet2DModel.from_pretrained(
            str(weights.parent),
            local_files_only=True,
            use_safetensors=weights.suffix == ".safetensors",
            torch_dtype=dtype or torch.float32,
            low_cpu_mem_usage=False,  # no `accelerate` (not a dependency): say so instead of being warned
        )
    elif spec.arch == "adm":
        from ..core.adm_checkpoint import KNOWN_CONFIGS, load_adm_checkpoint

        name = spec.config.get("adm_config")
        if name not in KNOWN_CONFIGS:
            raise BadInput(f"ADM base '{spec.id}' needs config['adm_config'] in {sorted(KNOWN_CONFIGS)}")
        weights = _checked_weights(spec, offline, progress)
        model = load_adm_checkpoint(weights, KNOWN_CONFIGS[name], device="cpu", dtype=None)
        if "class_label" in spec.config:  # an explicit label; with none a class-conditional ADM runs unconditioned
            from ..core.adm import ClassConditioned

            model = ClassConditioned(model, int(spec.config["class_label"]))
    else:
        raise BadInput(f"base '{spec.id}': unsupported arch '{spec.arch}'")
    model = model.to(device)
    if next(model.parameters()).dtype != (dtype or torch.float32):  # ADM modules have no .dtype
        model = model.to(dtype or torch.float32)
    return model.eval().requires_grad_(False)


def base_weights_path(spec_or_id) -> Path:
    """The installed weights file of a base; MissingWeightsError when it is not installed."""
    spec = _spec(spec_or_id)
    if spec.is_demo:
        return _demo_unet_dir() / "diffusion_pytorch_model.safetensors"
    f = weights_file(spec)
    path = download.local_file(spec, f)
    if path is None:
        raise download.MissingWeightsError(
            f.name, spec.id, download.model_dir(spec) / f.name, "not downloaded yet"
        )
    return path


def base_sha256(spec_or_id) -> str:
    """sha256 of the base's weights file (the demo's: of its safetensors); a cache key for the library."""
    spec = _spec(spec_or_id)
    path = base_weights_path(spec)
    if not path.is_file():
        raise download.MissingWeightsError(path.name, spec.id, path, "the file is missing")
    if not spec.is_demo:
        recorded = download.recorded_sha256(path)
        if recorded:
            return recorded
    return _cached_sha(path)


def base_config(spec_or_id) -> dict:
    """The architecture kwargs of a base (the demo's come from its config.json)."""
    spec = _spec(spec_or_id)
    if spec.is_demo and not spec.config:
        from diffusers.models.unets.unet_2d import UNet2DModel

        cfg = dict(UNet2DModel.load_config(str(_demo_unet_dir())))
        return {k: v for k, v in cfg.items() if not k.startswith("_")}
    return dict(spec.config)


def build_base_from_config(spec_or_id, seed: int = 0) -> nn.Module:
    """A randomly initialised model of the base's real architecture (benches, size measurements, tests)."""
    spec = _spec(spec_or_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.arch == "ddpm":
            from diffusers.models.unets.unet_2d import UNet2DModel

            model = UNet2DModel(**base_config(spec))
        elif spec.arch == "adm":
            from ..core.adm import ADMUNet
            from ..core.adm_checkpoint import KNOWN_CONFIGS

            model = ADMUNet(KNOWN_CONFIGS[spec.config["adm_config"]])
        else:
            raise BadInput(f"base '{spec.id}': unsupported arch '{spec.arch}'")
    return model.eval()


# --- CLIP ---------------------------------------------------------------------------------------
def load_clip(name: str, device: Device = "cpu", offline: Optional[bool] = None, progress=None):
    """(model, tokenizer): an open_clip CLIP in eval mode with frozen weights, and its tokenizer."""
    spec = registry.get_clip(name)
    if spec.is_demo:
        from ..demo.tiny_clip import load_demo_clip

        model, tokenizer = load_demo_clip(device)
    else:
        weights = _checked_weights(spec, offline, progress)
        import open_clip

        model = open_clip.create_model(spec.name, pretrained=str(weights), device=device)
        tokenizer = open_clip.get_tokenizer(spec.name)
    return model.eval().requires_grad_(False), tokenizer


# --- face net -----------------------------------------------------------------------------------
def load_face(
    device: Device = "cpu",
    offline: Optional[bool] = None,
    progress=None,
    face_id: str = registry.DEFAULT_FACE,
):
    """(InceptionResnetV1 with VGGFace2 weights from the app cache, MTCNN) on `device`, eval and frozen."""
    from facenet_pytorch import MTCNN, InceptionResnetV1

    spec = registry.get_face(face_id)
    path = download.ensure(spec, progress=progress, offline=offline) / spec.filename
    ok, reason = download.verify(path, spec.sha256)
    if not ok:
        raise download.ChecksumError(f"{reason}; repair it with: {download.download_command(spec.id)}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unsafe or damaged file is a user-facing error
        raise download.ChecksumError(
            f"{path.name} cannot be loaded as plain weights "
            f"({str(exc).splitlines()[0] if str(exc) else exc}); "
            f"repair it with: {download.download_command(spec.id)}"
        ) from None
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}  # the VGGFace2 classifier head
    net = InceptionResnetV1(pretrained=None, classify=False)
    net.load_state_dict(state, strict=True)
    net = net.to(device).eval().requires_grad_(False)
    return net, MTCNN(device=device)
