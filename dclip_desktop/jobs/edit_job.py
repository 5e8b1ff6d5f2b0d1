"""Manipulation (fig. 4a), continuous transition and multi-attribute mixing of real images, and
the reconstruction check. Used by `dclip edit`/`dclip reconstruct`, the GUI and batch jobs."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
from torch import nn

from .. import __version__
from ..core.cancel import CancelToken
from ..core.ddim import Denoiser, ddim_generate
from ..core.manipulation import generate
from ..core.metrics import mae, ssim
from ..core.mixing import ModelDenoiser, WeightSchedule, attribute_mix, validate_degree
from ..core.schedule import validate_steps, validate_t0
from ..untrusted import display, loads_value
from ..zoo.registry import attribute_t0
from .errors import JobError
from .progress import JobProgress, phase
from .session import Session

BY_T0 = "t0"  # the schedule that splits the steps between attributes by their t0
# ddim: η as given (0, the paper's deterministic generation, by default). ddpm: ancestral sampling,
# which is DDIM with η = 1 (Song et al. 2021, eq. 16) over the same S_gen steps.
SAMPLERS = ("ddim", "ddpm")


@dataclass
class EditRequest:
    attributes: list[tuple[str, float]]  # (library name or id, weight); weights sum to 1
    base_id: Optional[str] = None  # None: the attributes' base
    # γ_i(t) rows; None: constant weights; BY_T0: coarse to fine by the attributes' t0 (WeightSchedule.by_t0)
    schedule: Union[None, str, list[tuple[int, list[float]]]] = None
    degree: float = 1.0  # γ of the continuous transition toward the original model
    t0: Optional[int] = None  # None: the largest t0 among the attributes used
    s_for: int = 40
    s_gen: int = 40
    batch_size: int = 16
    eta: float = 0.0  # η of the DDIM generation: 0 deterministic, > 0 adds fresh noise ("variations")
    sampler: str = "ddim"
    seed: int = 0  # with η > 0, image i of the request draws its noise from seed + i
    extra: dict = field(default_factory=dict)  # carried into the output metadata

    @property
    def generation_eta(self) -> float:
        return 1.0 if self.sampler == "ddpm" else self.eta

    @property
    def stochastic(self) -> bool:
        return self.generation_eta > 0


def parse_attribute_args(specs: list[str]) -> list[tuple[str, float]]:
    """'NAME[:WEIGHT]' strings; weights default to an equal share. Raises only JobError."""
    if not specs:
        raise JobError("give at least one attribute (--attr NAME[:WEIGHT])")
    out, missing = [], []
    for spec in specs:
        name, sep, w = spec.rpartition(":")
        if not sep:
            name, w = spec, None
        if not name.strip():
            raise JobError(f"--attr '{display(spec)}' names no attribute: use NAME[:WEIGHT], e.g. blue:0.5")
        if w is None:
            out.append((name, None))
            missing.append(len(out) - 1)
            continue
        try:
            weight = float(w)
        except ValueError:
            raise JobError(f"bad weight in '{display(spec)}': use NAME:WEIGHT, e.g. blue:0.5") from None
        if not math.isfinite(weight):  # float() takes 'nan', 'inf' and '1e999'
            raise JobError(f"bad weight in '{display(spec)}': the weight must be a finite number")
        out.append((name, weight))
    if missing:
        given = sum(w for _, w in out if w is not None)
        share = (1.0 - given) / len(missing)
        out = [(n, share if w is None else w) for n, w in out]
    return out


STRIP_DEGREES = (0.0, 0.25, 0.5, 0.75, 1.0)  # the GUI's one-click strip


def parse_degrees(text: str) -> list[float]:
    """--degree: one γ, or a comma list ('0,0.25,0.5,0.75,1') for a strip of the same edit at each,
    every one in [0, 1]. Raises only JobError."""
    out = []
    for part in str(text).split(","):
        try:
            value = float(part)
            validate_degree(value)
        except ValueError:
            raise JobError(f"--degree {display(text)!r}: give γ in [0, 1], or a list such as 0,0.25,0.5,0.75,1") from None
        out.append(value)
    if len(set(out)) != len(out):
        raise JobError(f"--degree {display(text)!r} repeats a value: each γ of a strip once")
    return out


def parse_schedule_arg(text: Optional[str]):
    """--schedule: JSON rows '[[500,[1,0]],[0,[0.5,0.5]]]' → [(threshold, [weights…]), …] checked for
    shape and the rules that need no attribute count (build_edit checks the count), or 't0' for the
    coarse-to-fine split. Raises only JobError, for any text."""
    if not text:
        return None
    if text.strip() == BY_T0:
        return BY_T0
    rows = loads_value(text, f"--schedule (neither '{BY_T0}' nor JSON rows)", error=JobError)
    try:
        sched = WeightSchedule.of(rows)
        if len({len(ws) for _, ws in sched.rows}) > 1:
            raise ValueError("every row needs one weight per attribute, the rows have different counts")
        sched.validate(len(sched.rows[0][1]) if sched.rows else 0)
    except ValueError as exc:
        raise JobError(f"--schedule: {exc}") from None
    return [(th, list(ws)) for th, ws in sched.rows]


@dataclass(frozen=True)
class Edit:
    """An EditRequest checked against the library: what inverts, what generates, and with which settings."""

    request: EditRequest
    base_id: str
    entries: list  # library entries, in the request's order
    models: list[nn.Module]  # their materialised UNets
    schedule: WeightSchedule
    t0: int

    def denoiser(self, session: Session, compiled: bool = False) -> Denoiser:
        """The original model and the attributes, mixed by the schedule and pulled back by the degree."""
        unet = functools.partial(session.sampling_unet, compiled=compiled)
        original = ModelDenoiser(unet(session.base(self.base_id)), session.autocast_dtype)
        attrs = [ModelDenoiser(unet(m), session.autocast_dtype) for m in self.models]
        return attribute_mix(original, attrs, self.schedule, self.request.degree)

    def metadata(self, session: Session) -> dict:
        """The settings that reproduce the edit, for PNG text chunks and `dclip info`."""
        req = self.request
        return {
            "app_version": __version__,
            "operation": "edit",
            "base_id": self.base_id,
            "base_sha256": session.base_sha(self.base_id),
            "attributes": [
                {"name": e.name, "id": e.id, "weights_sha256": e.manifest.get("weights_sha256"), "weight": w}
                for e, (_, w) in zip(self.entries, req.attributes)
            ],
            "schedule": [[th, list(ws)] for th, ws in self.schedule.rows],
            "degree": req.degree,
            "t0": self.t0,
            "s_for": req.s_for,
            "s_gen": req.s_gen,
            "eta": req.eta,
            "sampler": req.sampler,
            **({"seed": req.seed} if req.stochastic else {}),
            "precision": session.precision,
            **req.extra,
        }


def build_edit(session: Session, req: EditRequest) -> Edit:
    """Check the request against the library (every setting before any inversion, and before a batch
    writes its manifest) and load its attributes."""
    if not req.attributes:
        raise JobError("no attribute selected")
    entries, models = [], []
    for name, _ in req.attributes:
        entry, model = session.attribute(name)
        entries.append(entry)
        models.append(model)
    bases = {e.base_id for e in entries}
    base_id = req.base_id or entries[0].base_id
    if bases != {base_id}:
        raise JobError(f"attributes belong to base(s) {sorted(bases)}, not to '{base_id}'")
    weights = [w for _, w in req.attributes]
    t0s = [attribute_t0(e.t0, e.base_id) for e in entries]
    if req.schedule == BY_T0:
        sched = WeightSchedule.by_t0(t0s, weights)
    elif isinstance(req.schedule, str):
        raise JobError(f"unknown schedule {req.schedule!r}: give JSON rows or '{BY_T0}'")
    else:
        sched = WeightSchedule.of(req.schedule) if req.schedule else WeightSchedule.constant(weights)
    sched.validate(len(models))
    used = [t for i, t in enumerate(t0s) if any(ws[i] != 0 for _, ws in sched.rows)]
    t0 = req.t0 if req.t0 is not None else max(used)
    validate_t0(t0)
    validate_degree(req.degree)
    validate_steps(req.s_for, "S_for")
    validate_steps(req.s_gen, "S_gen")
    validate_sampling(req)
    return Edit(req, base_id, entries, models, sched, t0)


def validate_sampling(req: EditRequest) -> None:
    """The sampler, η and seed: JobError with what to give."""
    if req.sampler not in SAMPLERS:
        raise JobError(f"unknown sampler {display(req.sampler)!r}; choose one of {', '.join(SAMPLERS)}")
    if isinstance(req.eta, bool) or not isinstance(req.eta, (int, float)) or not 0.0 <= req.eta <= 1.0:
        raise JobError(f"η must be in [0, 1] (0: deterministic, the paper's default), got {display(str(req.eta))}")
    if req.sampler == "ddpm" and req.eta not in (0.0, 1.0):
        raise JobError("the ddpm sampler is η = 1; give --eta only with --sampler ddim")
    if isinstance(req.seed, bool) or not isinstance(req.seed, int) or not 0 <= req.seed < 1 << 63:
        raise JobError(f"the seed must be a whole number from 0 to 2^63-1, got {display(str(req.seed))}")


def edit_tensor(
    session: Session,
    req: EditRequest,
    x0: torch.Tensor,
    *,
    progress: Optional[JobProgress] = None,
    cancel: Optional[CancelToken] = None,
) -> torch.Tensor:
    """Invert `x0` [N,3,H,W] with the original model (latent cache) and generate with the mix."""
    edit = build_edit(session, req)
    latents = session.invert(edit.base_id, x0, edit.t0, req.s_for, batch_size=req.batch_size,
                             progress=phase(progress, "inverting"), cancel=cancel)
    return generate(edit.denoiser(session), latents, edit.t0, req.s_gen, batch_size=req.batch_size,
                    eta=req.generation_eta, seeds=[req.seed + i for i in range(len(latents))],
                    progress=phase(progress, "generating"), cancel=cancel)


def edit_metadata(session: Session, req: EditRequest) -> dict:
    """The settings that reproduce an edit, for PNG text chunks and `dclip info`."""
    return build_edit(session, req).metadata(session)


def reconstruct_tensor(
    session: Session,
    base_id: str,
    x0: torch.Tensor,
    t0: int,
    s_for: int = 40,
    s_gen: int = 40,
    *,
    progress: Optional[JobProgress] = None,
    cancel: Optional[CancelToken] = None,
) -> tuple[torch.Tensor, dict]:
    """Invert then generate with the original model: the reconstruction check (paper Table 1)."""
    validate_t0(t0)
    session.prepare(base_id)  # fetched first: the latent cache's key needs the weights' sha
    latents = session.invert(base_id, x0, t0, s_for, progress=phase(progress, "inverting"), cancel=cancel)
    den = ModelDenoiser(session.base(base_id), session.autocast_dtype)
    recon = ddim_generate(den, latents, t0, s_gen, progress=phase(progress, "generating"), cancel=cancel)
    x0 = x0.to(recon.device)
    return recon.clamp(-1, 1), {"mae": mae(recon, x0), "ssim": ssim(recon.clamp(-1, 1), x0)}
