"""What the zoo knows about a model: the spec dataclasses of bases, CLIP models and the face net, their
files, edit presets and vocabularies. Pure data, no torch; the entries themselves are in catalogue.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import BadInput

DDPM_SCHEDULE = {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": 1000}


class UnknownBaseError(KeyError, BadInput):
    """An id that names no registered model; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class FileSpec:
    """One file of a model repo. `alternative` is fetched instead when the server has no `name` (404).

    `sha256` / `alternative_sha256`: the published checksum of each, where a public source states one
    (the file is then "pinned"); None means trusted on first use (`fetcher.py`)."""

    name: str
    sha256: Optional[str] = None
    alternative: Optional[str] = None
    weights: bool = True  # False for configs: base_sha256 hashes the weights file
    alternative_sha256: Optional[str] = None

    def pinned_sha256(self, name: str) -> Optional[str]:
        """The published sha256 of `name` (this file or its alternative), if one is known."""
        return self.sha256 if name == self.name else self.alternative_sha256 if name == self.alternative else None


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


RECIPE_KEYS = ("t0", "lambda_l1", "lambda_face", "epochs", "lr", "clip_loss_form")


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
    # Where to get the weights by hand when there is no URL (installed with `dclip models add`).
    manual_source: str = ""
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
