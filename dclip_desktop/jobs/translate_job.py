"""Unseen-domain translation and stroke-conditioned generation (GUI "Generate", `dclip translate`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from .. import __version__
from ..core.cancel import CancelToken
from ..core.mixing import ModelDenoiser, attribute_mix
from ..core.translate import translate
from .edit_job import EditRequest, resolve
from .progress import JobProgress, phase
from .session import Session


@dataclass
class TranslateRequest:
    edit: EditRequest  # which attribute(s) to apply, their weights, γ, t0, S_for/S_gen
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    rounds: int = 8  # K rounds of noising + denoising with the original model (8+ for strokes)
    project_t0: Optional[int] = None  # None: the base's (BaseSpec.project_t0)
    project_steps: int = 10


def translate_tensor(
    session: Session,
    req: TranslateRequest,
    x_src: torch.Tensor,
    *,
    progress: Optional[JobProgress] = None,
    cancel: Optional[CancelToken] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_src [1,3,S,S] (or one image per seed) → (projected, edited) candidates, one per seed."""
    if not req.seeds:
        raise ValueError("ask for at least one seed")
    base_id, _, models, sched, t0 = resolve(session, req.edit)
    project_t0 = _project_t0(session, req, base_id)
    original = ModelDenoiser(session.base(base_id), session.autocast_dtype)
    target = attribute_mix(original, [ModelDenoiser(m, session.autocast_dtype) for m in models], sched,
                           req.edit.degree)
    return translate(
        original, target, x_src.to(session.device), req.seeds, edit_t0=t0, s_for=req.edit.s_for,
        s_gen=req.edit.s_gen, project_t0=project_t0, rounds=req.rounds, project_steps=req.project_steps,
        progress=phase(progress, "translating"), cancel=cancel,
    )


def _project_t0(session: Session, req: TranslateRequest, base_id: str) -> int:
    return int(req.project_t0 if req.project_t0 is not None else session.spec(base_id).project_t0)


def translate_metadata(session: Session, req: TranslateRequest, seed: int) -> dict:
    from .edit_job import edit_metadata

    meta = edit_metadata(session, req.edit)
    base_id = resolve(session, req.edit)[0]
    meta.update(operation="translate", seed=seed, rounds=req.rounds, project_t0=_project_t0(session, req, base_id),
                project_steps=req.project_steps, app_version=__version__)
    return meta
