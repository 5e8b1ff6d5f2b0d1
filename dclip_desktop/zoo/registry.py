"""The model zoo's catalogue: diffusion bases, CLIP models and the face net, with edit presets.

Pure data (no torch, no network): what each model is, where its files come from and how its
architecture is built. Loading lives in `loading.py`, fetching in `download.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import BadInput

DDPM_SCHEDULE = {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": 1000}


# FinetuneConfig.t0 (core.finetune, which needs torch): the t0 of a base without a recipe
DEFAULT_T0 = 400


class UnknownBaseError(KeyError, BadInput):
    """An id that names no registered model; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class FileSpec:
    """One file of a model repo. `alternative` is fetched instead when the server has no `name` (404)."""

    name: str
    sha256: Optional[str] = None
    alternative: Optional[str] = None
    weights: bool = True  # False for configs: base_sha256 hashes the weights file


@dataclass(frozen=True)
class Preset:
    name: str
    source: str
    target: str
    t0: int
    domain: str
    # Fine-tuning settings that make this attribute work (measured); None keeps FinetuneConfig's default.
    lambda_l1: Optional[float] = None
    epochs: Optional[int] = None
    clip_loss_form: Optional[str] = None


@dataclass(frozen=True)
class Vocabulary:
    """Mutually exclusive values of one kind of attribute the base draws (the colours of the demo shapes,
    hair colours of faces). The values a source text is told apart from when training images are picked
    from samples, and the recipe refinements that kind of edit needs (measured; None: the base's)."""

    kind: str
    values: tuple[str, ...]
    t0: Optional[int] = None
    lambda_l1: Optional[float] = None
    epochs: Optional[int] = None
    clip_loss_form: Optional[str] = None

    def holds(self, text: str) -> bool:
        return text.strip().lower() in (v.lower() for v in self.values)


RECIPE_KEYS = ("t0", "lambda_l1", "epochs", "lr", "clip_loss_form")


@dataclass
class BaseSpec:
    id: str
    title: str
    domain: str
    arch: str  # "ddpm" (diffusers UNet2DModel) | "adm" (the project's guided-diffusion UNet)
    resolution: int
    repo_id: Optional[str] = None  # Hugging Face repo; None for local (demo) bases
    revision: Optional[str] = None  # pinned commit where known; None means "main"
    files: list[FileSpec] = field(default_factory=list)
    presets: list[Preset] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # kwargs building the architecture (UNet2DModel(**config))
    is_demo: bool = False
    url: Optional[str] = None  # direct download URL for non-HF single-file bases (ADM checkpoints)
    schedule: dict = field(default_factory=lambda: dict(DDPM_SCHEDULE))
    # "package.module:function" called as fn(spec, device=, dtype=, offline=, progress=); None: by arch
    loader: Optional[str] = None
    notes: str = ""
    # Stroke/unseen-domain projection noise level: high enough to wash out brush texture, low enough
    # to keep the painted colour (measured: 300 on the 32² demo world; the paper uses ≈ 500 at 256²).
    project_t0: int = 500
    # The default fine-tune recipe (FinetuneConfig overrides) for any prompt pair in this base's domain;
    # a vocabulary kind, then a preset, refine it (recipe_for).
    recipe: dict = field(default_factory=dict)
    vocabulary: tuple[Vocabulary, ...] = ()


@dataclass
class ClipSpec:
    name: str  # the open_clip model name (a config name); "demo-tiny" for the demo CLIP
    title: str
    pretrained_tag: Optional[str] = None
    repo_id: Optional[str] = None
    revision: Optional[str] = None
    files: list[FileSpec] = field(default_factory=list)
    image_size: int = 224
    is_demo: bool = False

    @property
    def id(self) -> str:
        return self.name


@dataclass
class FaceSpec:
    id: str
    title: str
    filename: str
    url: str
    sha256: Optional[str] = None

    @property
    def files(self) -> list[FileSpec]:
        return [FileSpec(self.filename, self.sha256)]


# --- architectures ------------------------------------------------------------------------------
# google/ddpm-ema-{celebahq,church,bedroom}-256: 6 levels 256²..8², attention at 16² (level 4), so
# up-block 1 (levels reversed). UNet2DModel(**DDPM256_CONFIG) has 113,673,219 parameters.
DDPM256_CONFIG: dict = {
    "sample_size": 256,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "freq_shift": 1,
    "flip_sin_to_cos": False,
    "down_block_types": (
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "AttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    "block_out_channels": (128, 128, 256, 256, 512, 512),
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 0,
    "act_fn": "silu",
    "attention_head_dim": None,
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
}
DDPM256_PARAMS = 113_673_219

DDPM_FILES = [
    FileSpec("config.json", weights=False),
    FileSpec("diffusion_pytorch_model.safetensors", alternative="diffusion_pytorch_model.bin"),
]

# --- presets ------------------------------------------------------------------------------------
# t0 per METHOD.md: colour/attribute edits 201–401, style/identity swaps 500–601.
# Demo t0 values and settings were tuned on the trained tiny DDPM by pixel measures (models/demo/README.md).
DEMO_PRESETS = [
    Preset("Red → blue", "red", "blue", 301, "shapes", lambda_l1=1.0, epochs=4),
    Preset("Circle → square", "circle", "square", 501, "shapes", lambda_l1=0.3, epochs=4, clip_loss_form="dir"),
    # white → black does not learn on the CPU-trained models (models/demo/README.md); gray → black does.
    # t0 701: at 601–651 the background turns only dark gray once mixed, and whether it passes for black
    # flips with the CPU thread count; 701 is black either way, at the cost of softer outlines
    Preset("Gray → black background", "gray background", "black background", 701, "shapes", lambda_l1=0.3,
           epochs=4, clip_loss_form="dir"),
]

# Measured on tuning scenes (seeds ≥ 2 000 000) by the default path (models/demo/README.md, "The default
# path"). Colours at t0 301 / λ_L1 1 (the red → blue preset) keep outlines best, but the fine-tune then
# paints the background green → red or blue → yellow (0 %); t0 501 lets the shape be redrawn in the
# new colour and λ_L1 3 holds the background and the layout.
DEMO_RECIPE = {"t0": 501, "lambda_l1": 3.0, "epochs": 4, "clip_loss_form": "neglog"}
DEMO_VOCABULARY = (
    Vocabulary("colour", ("red", "green", "blue", "yellow")),
    Vocabulary("shape", ("circle", "square", "triangle"), t0=501, lambda_l1=0.3, clip_loss_form="dir"),
    Vocabulary("background", ("white background", "black background", "gray background"), t0=701,
               lambda_l1=0.3, clip_loss_form="dir"),
)

# Values a face sample is told apart from when "blond hair" → "black hair" picks its training images.
FACE_VOCABULARY = (
    Vocabulary("hair colour", ("blond hair", "black hair", "brown hair", "grey hair", "red hair")),
)

FACE_PRESETS = [
    Preset("Angry", "face", "angry face", 301, "face"),
    Preset("Tanned", "face", "tanned face", 201, "face"),
    Preset("Makeup", "face", "face with makeup", 301, "face"),
    Preset("Grey hair", "face", "face with grey hair", 301, "face"),
    Preset("Pixar", "face", "3D render in the style of Pixar", 601, "face"),
    Preset("Sketch", "photo", "sketch", 601, "face"),
    Preset("Neanderthal", "human", "Neanderthal", 601, "face"),
    Preset("Zombie", "human", "zombie", 601, "face"),
    Preset("Van Gogh", "photo", "painting in Van Gogh style", 601, "face"),
]

CHURCH_PRESETS = [
    Preset("Red brick", "church", "red brick wall church", 301, "church"),
    Preset("Golden", "church", "golden church", 301, "church"),
    Preset("Wooden", "church", "wooden church", 401, "church"),
    Preset("Snow covered", "church", "snow covered church", 401, "church"),
    Preset("Gothic", "church", "gothic church", 601, "church"),
]

BEDROOM_PRESETS = [
    Preset("Princess", "bedroom", "princess bedroom", 601, "bedroom"),
    Preset("Wooden", "bedroom", "wooden bedroom", 401, "bedroom"),
    Preset("Palace", "bedroom", "palace bedroom", 601, "bedroom"),
]

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


# Registration order matters: the demo first (the default and the first in lists).
register_base(
    BaseSpec(
        id="demo-shapes",
        title="Demo shapes (32×32)",
        domain="shapes",
        arch="ddpm",
        resolution=32,
        presets=DEMO_PRESETS,
        recipe=DEMO_RECIPE,
        vocabulary=DEMO_VOCABULARY,
        is_demo=True,
        project_t0=300,
        notes="Tiny DDPM trained on the procedural shapes world; weights ship in models/demo/unet.",
    )
)
for _id, _domain, _title, _presets in (
    ("celebahq", "face", "CelebA-HQ faces (256×256)", FACE_PRESETS),
    ("church", "church", "LSUN church (256×256)", CHURCH_PRESETS),
    ("bedroom", "bedroom", "LSUN bedroom (256×256)", BEDROOM_PRESETS),
):
    register_base(
        BaseSpec(
            id=_id,
            title=_title,
            domain=_domain,
            arch="ddpm",
            resolution=256,
            repo_id=f"google/ddpm-ema-{_id}-256",
            revision=None,
            files=list(DDPM_FILES),
            presets=list(_presets),
            config=dict(DDPM256_CONFIG),
            vocabulary=FACE_VOCABULARY if _domain == "face" else (),
            # Not measured here (no GPU): the paper's t0 for the domain's typical edit; FinetuneConfig
            # holds the paper's other defaults.
            recipe={"t0": _presets[0].t0},
        )
    )

register_clip(
    ClipSpec(
        name="ViT-B-16-quickgelu",
        title="OpenAI CLIP ViT-B/16",
        pretrained_tag="openai",
        repo_id="timm/vit_base_patch16_clip_224.openai",
        files=[FileSpec("open_clip_model.safetensors", alternative="open_clip_pytorch_model.bin")],
    )
)
register_clip(
    ClipSpec(
        name="ViT-B-32-quickgelu",
        title="OpenAI CLIP ViT-B/32",
        pretrained_tag="openai",
        repo_id="timm/vit_base_patch32_clip_224.openai",
        files=[FileSpec("open_clip_model.safetensors", alternative="open_clip_pytorch_model.bin")],
    )
)
register_clip(ClipSpec(name="demo-tiny", title="Demo tiny CLIP (32×32)", image_size=32, is_demo=True))

register_face(
    FaceSpec(
        id="facenet-vggface2",
        title="FaceNet InceptionResnetV1 (VGGFace2)",
        filename="20180402-114759-vggface2.pt",
        url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    )
)

# --- ADM bases (the project's own guided-diffusion UNet, core/adm.py) ----------------------------
DOG_PRESETS = [
    Preset("Bear", "dog", "bear", 500, "dog"),
    Preset("Hamster", "dog", "hamster", 500, "dog"),
    Preset("Zombie", "dog", "zombie", 500, "dog"),
    Preset("Yorkshire", "dog", "yorkshire terrier", 500, "dog"),
    Preset("Wolf", "dog", "wolf", 500, "dog"),
]
IMAGENET_PRESETS = [
    Preset("Watercolor", "photo", "watercolor art", 601, "general"),
    Preset("Van Gogh", "photo", "painting by Gogh", 601, "general"),
    Preset("Cubism", "photo", "cubism art", 601, "general"),
    Preset("Pop art", "photo", "pop art", 601, "general"),
    Preset("Ukiyo-e", "photo", "ukiyo-e painting", 601, "general"),
]
register_base(
    BaseSpec(
        id="afhq-dog",
        title="AFHQ dog (256×256, ADM, ILVR)",
        domain="dog",
        arch="adm",
        resolution=256,
        files=[FileSpec("afhqdog_p2.pt")],
        presets=DOG_PRESETS,
        recipe={"t0": 500},
        config={"adm_config": "afhq_dog_256"},
        notes="ILVR's AFHQ-dog checkpoint has no stable direct URL: put the file into the folder that "
        "`dclip models download afhq-dog` names.",
    )
)
register_base(
    BaseSpec(
        id="imagenet-512",
        title="ImageNet (512×512, ADM, class-conditional)",
        domain="general",
        arch="adm",
        resolution=512,
        url="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/512x512_diffusion.pt",
        files=[FileSpec("512x512_diffusion.pt")],
        presets=IMAGENET_PRESETS,
        recipe={"t0": 601},
        # Class-conditional: edits condition on one ImageNet class (config "class_label").
        config={"adm_config": "imagenet_512", "class_label": 0},
        loader="dclip_desktop.zoo.adm_loading:load_class_conditioned",
    )
)
