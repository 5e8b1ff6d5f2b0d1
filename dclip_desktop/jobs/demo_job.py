"""`dclip demo`: the whole method on the bundled demo world in one command.

Samples training scenes of the preset's source attribute, fine-tunes one attribute from the text
pair alone, edits held-out scenes (seeds disjoint from training) and measures the edit by pixels.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PIL import Image

from ..core.cancel import CancelToken
from ..core.finetune import FinetuneConfig
from ..demo import world
from ..demo.evaluate import grid, measure_edit, scene_overrides
from .edit_job import EditRequest, edit_tensor
from .errors import JobError
from .finetune_job import FinetuneRequest, run_finetune
from .images import atomic_write_bytes, encode_png
from .progress import JobProgress
from .session import Session

DEMO_BASE = "demo-shapes"


@dataclass
class DemoRequest:
    preset: str = "red"  # a preset name or its source→target, matched loosely
    n_train: int = 48  # the issue allows ≤ 50 training scenes
    n_eval: int = 16
    epochs: Optional[int] = None  # None: the preset's
    s_gen_train: int = 6
    s_for: int = 40
    s_gen: int = 40
    seed: int = 0


def find_preset(session: Session, query: str):
    presets = session.spec(DEMO_BASE).presets
    q = query.lower().replace(" ", "")
    for p in presets:
        keys = {p.name.lower().replace(" ", ""), f"{p.source}→{p.target}".replace(" ", ""), p.source.replace(" ", "")}
        if q in keys or q == p.name.lower().split("→")[0].strip():
            return p
    names = ", ".join(f"'{p.name}'" for p in presets)
    raise JobError(f"no demo preset matches '{query}'; choose one of {names}")


def _unique_name(session: Session, name: str) -> str:
    k, candidate = 2, name
    while session.library.find(candidate) is not None:
        candidate = f"{name} ({k})"
        k += 1
    return candidate


def run_demo(
    session: Session,
    req: DemoRequest,
    out_dir: Path,
    *,
    progress: Optional[JobProgress] = None,
    cancel: Optional[CancelToken] = None,
) -> dict:
    start = time.perf_counter()
    preset = find_preset(session, req.preset)
    overrides = scene_overrides(preset.source)
    train_x, _, _ = world.make_scenes(range(req.seed, req.seed + req.n_train), **overrides)
    eval_seeds = range(world.HELDOUT_SEED_START + req.seed, world.HELDOUT_SEED_START + req.seed + req.n_eval)
    eval_x, eval_masks, _ = world.make_scenes(eval_seeds, **overrides)
    tuning = preset.tuning()
    if req.epochs is not None:
        tuning["epochs"] = req.epochs
    cfg = FinetuneConfig(**tuning, s_for=req.s_for, s_gen=req.s_gen_train, seed=req.seed)
    name = _unique_name(session, f"demo {preset.name}")
    entry = run_finetune(
        session,
        FinetuneRequest(DEMO_BASE, preset.source, preset.target, name, config=cfg, tensors=train_x),
        progress=progress, cancel=cancel,
    )
    t_train = time.perf_counter() - start
    edit = EditRequest(attributes=[(entry.id, 1.0)], s_for=req.s_for, s_gen=req.s_gen)
    after = edit_tensor(session, edit, eval_x, progress=progress, cancel=cancel).cpu()
    metrics = measure_edit(eval_x, after, eval_masks, preset.target)
    metrics.pop("per_scene_success")
    report = {
        "preset": {"name": preset.name, "source": preset.source, "target": preset.target, "t0": preset.t0},
        "finetune": cfg.to_dict(),
        "attribute": {"name": entry.name, "id": entry.id},
        "train_scenes": req.n_train,
        "heldout_scenes": req.n_eval,
        "heldout_seed_start": eval_seeds.start,
        "metrics": metrics,
        "seconds": {"finetune": round(t_train, 1), "total": round(time.perf_counter() - start, 1)},
        "device": str(session.device),
        "precision": session.precision,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "demo-grid.png", encode_png(Image.fromarray(grid([eval_x, after])), report))
    atomic_write_bytes(out_dir / "demo-metrics.json", json.dumps(report, indent=2).encode())
    return report
