"""The model zoo's registry: the bases, CLIP models and face nets that can be looked up by id, and the
fine-tune recipe a text pair gets on a base.

Pure data (no torch, no network). The specs are `specs.py`, the entries `catalogue.py`; loading
lives in `loading.py`, fetching in `download.py`.
"""

from __future__ import annotations

from typing import Optional

from ..core.config import FinetuneConfig
from .catalogue import (
    BASES,
    BEDROOM_PRESETS,
    CHURCH_PRESETS,
    CLIPS,
    DDPM256_CONFIG,
    DDPM256_PARAMS,
    DDPM_FILES,
    DEMO_PRESETS,
    DEMO_RECIPE,
    DEMO_VOCABULARY,
    DOG_PRESETS,
    FACE_PRESETS,
    FACE_VOCABULARY,
    FACES,
    IMAGENET_PRESETS,
)
from .specs import (
    DDPM_SCHEDULE,
    RECIPE_KEYS,
    BaseSpec,
    ClipSpec,
    FaceSpec,
    FileSpec,
    Preset,
    UnknownBaseError,
    Vocabulary,
)

# Callers use `registry.X` for the specs and the catalogue's tables too.
__all__ = [
    "BEDROOM_PRESETS", "CHURCH_PRESETS", "DDPM256_CONFIG", "DDPM256_PARAMS", "DDPM_FILES", "DDPM_SCHEDULE",
    "DEFAULT_BASE", "DEFAULT_CLIP", "DEFAULT_FACE", "DEFAULT_T0", "DEMO_PRESETS", "DEMO_RECIPE",
    "DEMO_VOCABULARY", "DOG_PRESETS", "FACE_PRESETS", "FACE_VOCABULARY", "IMAGENET_PRESETS", "RECIPE_KEYS",
    "BaseSpec", "ClipSpec", "FaceSpec", "FileSpec", "Preset", "UnknownBaseError", "Vocabulary",
    "all_model_ids", "attribute_t0", "base_ids", "default_base", "find_preset_for", "get_any", "get_base",
    "get_clip", "get_face", "list_bases", "list_clips", "list_faces", "presets_for", "recipe_for",
    "register_base", "register_clip", "register_face", "vocabulary_for",
]

DEFAULT_T0 = FinetuneConfig.t0  # the t0 of a base without a recipe


# --- the registry -------------------------------------------------------------------------------
_BASES: dict[str, BaseSpec] = {}
_CLIPS: dict[str, ClipSpec] = {}
_FACES: dict[str, FaceSpec] = {}

DEFAULT_BASE = "demo-shapes"
DEFAULT_CLIP = "ViT-B-16-quickgelu"
DEFAULT_FACE = "facenet-vggface2"


def register_base(spec: BaseSpec, replace: bool = False) -> BaseSpec:
    """Add a base (other modules add ADM bases with arch "adm" this way)."""
    if spec.id in _BASES and not replace:
        raise ValueError(f"base '{spec.id}' is already registered")
    if spec.arch not in ("ddpm", "adm"):
        raise ValueError(f"base '{spec.id}': unknown arch '{spec.arch}' (expected 'ddpm' or 'adm')")
    _BASES[spec.id] = spec
    return spec


def register_clip(spec: ClipSpec, replace: bool = False) -> ClipSpec:
    if spec.name in _CLIPS and not replace:
        raise ValueError(f"CLIP '{spec.name}' is already registered")
    _CLIPS[spec.name] = spec
    return spec


def register_face(spec: FaceSpec, replace: bool = False) -> FaceSpec:
    if spec.id in _FACES and not replace:
        raise ValueError(f"face model '{spec.id}' is already registered")
    _FACES[spec.id] = spec
    return spec


def list_bases() -> list[BaseSpec]:
    """Every registered base, the default (demo) first, then in registration order."""
    return list(_BASES.values())


def base_ids() -> list[str]:
    return list(_BASES)


def get_base(base_id) -> BaseSpec:
    if isinstance(base_id, BaseSpec):
        return base_id
    try:
        return _BASES[base_id]
    except (KeyError, TypeError):
        raise UnknownBaseError(f"unknown base model '{base_id}'; valid ids: {', '.join(_BASES)}") from None


def default_base() -> BaseSpec:
    return _BASES[DEFAULT_BASE]


def list_clips() -> list[ClipSpec]:
    return list(_CLIPS.values())


def get_clip(name) -> ClipSpec:
    if isinstance(name, ClipSpec):
        return name
    try:
        return _CLIPS[name]
    except (KeyError, TypeError):
        raise UnknownBaseError(f"unknown CLIP model '{name}'; valid names: {', '.join(_CLIPS)}") from None


def list_faces() -> list[FaceSpec]:
    return list(_FACES.values())


def get_face(face_id: str = DEFAULT_FACE) -> FaceSpec:
    try:
        return _FACES[face_id]
    except (KeyError, TypeError):
        raise UnknownBaseError(f"unknown face model '{face_id}'; valid ids: {', '.join(_FACES)}") from None


def get_any(model_id: str):
    """A base, CLIP or face spec by id (what `dclip models download <id>` accepts)."""
    for table in (_BASES, _CLIPS, _FACES):
        if model_id in table:
            return table[model_id]
    raise UnknownBaseError(f"unknown model '{model_id}'; valid ids: {', '.join(all_model_ids())}")


def all_model_ids() -> list[str]:
    return [*_BASES, *_CLIPS, *_FACES]


def presets_for(base_id: str) -> list[Preset]:
    return list(get_base(base_id).presets)


def vocabulary_for(spec: BaseSpec, source: str, target: str) -> Optional[Vocabulary]:
    """The kind of edit a text pair makes: the vocabulary holding the source (else the target)."""
    for text in (source, target):
        for vocab in spec.vocabulary:
            if vocab.holds(text):
                return vocab
    return None


def find_preset_for(spec: BaseSpec, source: str, target: str) -> Optional[Preset]:
    s, t = source.strip().lower(), target.strip().lower()
    for p in spec.presets:
        if p.source.lower() == s and p.target.lower() == t:
            return p
    return None


def attribute_t0(t0, base_id: str) -> int:
    """The return step an attribute edits at: its own, else (an imported .pth whose name told none)
    the base recipe's, the t0 such checkpoints are usually trained at."""
    if isinstance(t0, int) and not isinstance(t0, bool) and 0 < t0 < 1000:
        return t0
    try:
        return int(get_base(base_id).recipe.get("t0", DEFAULT_T0))
    except UnknownBaseError:
        return DEFAULT_T0


def recipe_for(spec: BaseSpec, source: str, target: str) -> dict:
    """FinetuneConfig overrides for a text pair: the base's recipe, refined by the kind of edit (its
    vocabulary) and then by a preset of exactly that pair. The one place defaults are decided, for the
    CLI, the GUI and `dclip demo`."""
    out = {k: v for k, v in spec.recipe.items() if k in RECIPE_KEYS}
    vocab = vocabulary_for(spec, source, target)
    preset = find_preset_for(spec, source, target)
    for layer in (vocab, preset):
        if layer is not None:
            out.update({k: getattr(layer, k) for k in RECIPE_KEYS if getattr(layer, k, None) is not None})
    return out


for _spec in BASES:
    register_base(_spec)
for _spec in CLIPS:
    register_clip(_spec)
for _spec in FACES:
    register_face(_spec)
del _spec
