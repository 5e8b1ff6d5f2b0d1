"""Unseen-domain translation and stroke-conditioned generation (GUI "Generate", `dclip translate`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from .. import __version__
from ..core.cancel import CancelToken
from ..core.mixing import ModelDenoiser
from ..core.translate import translate
from .edit_job import EditRequest, build_edit
from .errors import JobError
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
    """x_src [1,3,S,S] (or one image per seed) → (projected, edited) candidates, one per seed.

    Each step of the translation is its own phase (`progress.translate_phases`), so one bar runs over
    all three instead of restarting at each."""
    if not req.seeds:
        raise JobError("ask for at least one seed")
    edit = build_edit(session, req.edit)
    original = ModelDenoiser(session.base(edit.base_id), session.autocast_dtype)
    return translate(
        original, edit.denoiser(session), x_src.to(session.device), req.seeds, edit_t0=edit.t0, s_for=req.edit.s_for,
        s_gen=req.edit.s_gen, project_t0=_project_t0(session, req, edit.base_id), rounds=req.rounds,
        project_steps=req.project_steps, eta=req.edit.generation_eta, cancel=cancel, phase_progress=lambda name: phase(progress, name),
    )


def _project_t0(session: Session, req: TranslateRequest, base_id: str) -> int:
    return int(req.project_t0 if req.project_t0 is not None else session.spec(base_id).project_t0)


def translate_metadata(session: Session, req: TranslateRequest, seed: int) -> dict:
    edit = build_edit(session, req.edit)
    meta = edit.metadata(session)
    meta.update(operation="translate", seed=seed, rounds=req.rounds, project_t0=_project_t0(session, req, edit.base_id),
                project_steps=req.project_steps, app_version=__version__)
    return meta
