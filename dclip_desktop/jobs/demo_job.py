"""`dclip demo`: the whole method on the bundled demo world in one command, the way a user runs it.

Fine-tunes one attribute from a text pair alone, by the default path (`dclip finetune --src --tgt`):
training images sampled from the base and kept where CLIP reads them as the source text, the base's
recipe for the pair. Then edits held-out scenes of the source (seeds ≥ 1 000 000, which no training
or tuning run sees) and measures the edit by pixels. `--matrix` does that for every ordered pair of a
kind (colours, shapes, backgrounds).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from PIL import Image

from ..core.cancel import CancelToken
from ..core.config import config_from_recipe
from ..demo import world
from ..demo.evaluate import grid, measure_edit, scene_overrides
from ..zoo.registry import recipe_for
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
    source: Optional[str] = None  # or a text pair of the user's own (both given: the preset is ignored)
    target: Optional[str] = None
    n_train: int = 24  # images kept from the base's samples: `dclip finetune`'s default
    n_eval: int = 16
    epochs: Optional[int] = None  # None: the recipe's
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


def _pair(session: Session, req: DemoRequest) -> tuple[str, str]:
    if req.source and req.target:
        return req.source, req.target
    preset = find_preset(session, req.preset)
    return preset.source, preset.target


def demo_pair(session: Session, req: DemoRequest, *, progress: Optional[JobProgress] = None,
              cancel: Optional[CancelToken] = None):
    """(report, held-out scenes, their edits) for one text pair, fine-tuned by the default path."""
    start = time.perf_counter()
    source, target = _pair(session, req)
    overrides = scene_overrides(source)
    if not overrides:
        raise JobError(f"'{source}' names no colour, shape or background of the demo world, so held-out "
                       "scenes of it cannot be drawn; use e.g. 'red', 'circle' or 'gray background'")
    eval_seeds = range(world.HELDOUT_SEED_START + req.seed, world.HELDOUT_SEED_START + req.seed + req.n_eval)
    eval_x, eval_masks, _ = world.make_scenes(eval_seeds, **overrides)
    chosen_here = {"s_for": req.s_for, "s_gen": req.s_gen_train, "seed": req.seed}
    if req.epochs is not None:
        chosen_here["epochs"] = req.epochs
    cfg = config_from_recipe(recipe_for(session.spec(DEMO_BASE), source, target), chosen_here)
    chosen: dict = {}

    def on_images(c) -> None:
        chosen.update(summary=c.summary(), kept=len(c.images), matched=c.matched, sampled=c.considered)

    entry = run_finetune(
        session,
        FinetuneRequest(DEMO_BASE, source, target, _unique_name(session, f"demo {source} → {target}"),
                        config=cfg, sample_count=req.n_train),
        progress=progress, cancel=cancel, on_images=on_images,
    )
    t_train = time.perf_counter() - start
    edit = EditRequest(attributes=[(entry.id, 1.0)], s_for=req.s_for, s_gen=req.s_gen)
    after = edit_tensor(session, edit, eval_x, progress=progress, cancel=cancel).cpu()
    metrics = measure_edit(eval_x, after, eval_masks, target)
    metrics.pop("per_scene_success")
    report = {
        "pair": {"source": source, "target": target},
        "finetune": cfg.to_dict(),
        "attribute": {"name": entry.name, "id": entry.id},
        "training_images": chosen,
        "heldout_scenes": req.n_eval,
        "heldout_seed_start": eval_seeds.start,
        "metrics": metrics,
        "seconds": {"finetune": round(t_train, 1), "total": round(time.perf_counter() - start, 1)},
        "device": str(session.device),
        "precision": session.precision,
    }
    return report, eval_x, after


def run_demo(
    session: Session,
    req: DemoRequest,
    out_dir: Path,
    *,
    progress: Optional[JobProgress] = None,
    cancel: Optional[CancelToken] = None,
) -> dict:
    report, before, after = demo_pair(session, req, progress=progress, cancel=cancel)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "demo-grid.png", encode_png(Image.fromarray(grid([before, after])), report))
    atomic_write_bytes(out_dir / "demo-metrics.json", json.dumps(report, indent=2).encode())
    return report


# The issue #16 bars for the default path, per kind of edit: share of held-out scenes that show the
# target, and (colours only) mask IoU and background MAE.
MATRIX_BARS = {"colour": {"success": 0.90, "iou": 0.85, "background_mae": 0.05},
               "shape": {"success": 0.80}, "background": {"success": 0.80}}


def matrix_pairs(session: Session, kinds: Optional[list[str]] = None) -> list[tuple[str, str, str]]:
    """(kind, source, target) for every ordered pair within each of the base's vocabularies."""
    vocab = session.spec(DEMO_BASE).vocabulary
    known = [v.kind for v in vocab]
    for k in kinds or []:
        if k not in known:
            raise JobError(f"unknown kind '{k}'; choose from {', '.join(known)}")
    return [(v.kind, a, b) for v in vocab if not kinds or v.kind in kinds
            for a, b in itertools.permutations(v.values, 2)]


def passes(kind: str, metrics: dict) -> bool:
    bars = MATRIX_BARS.get(kind, {})
    return all(metrics[k] <= bar if k == "background_mae" else metrics[k] >= bar for k, bar in bars.items())


def matrix_markdown(rows: list[dict]) -> str:
    lines = ["| kind | source → target | success | mask IoU | background MAE | kept / matched / sampled | "
             "fine-tune s | bar met |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, c = r["metrics"], r["training_images"]
        lines.append(f"| {r['kind']} | {r['pair']['source']} → {r['pair']['target']} | {m['success']:.0%} | "
                     f"{m['iou']:.3f} | {m['background_mae']:.3f} | {c['kept']} / {c['matched']} / {c['sampled']} | "
                     f"{r['seconds']['finetune']:.0f} | {'yes' if r['passes'] else 'no'} |")
    return "\n".join(lines) + "\n"


def run_matrix(
    session: Session,
    req: DemoRequest,
    out_dir: Path,
    kinds: Optional[list[str]] = None,
    *,
    progress: Optional[JobProgress] = None,
    cancel: Optional[CancelToken] = None,
    on_row: Optional[Callable[[dict], None]] = None,
) -> list[dict]:
    """Every ordered pair of the chosen kinds through the default path; writes demo-matrix.json/.md and
    demo-matrix.png (per pair, 8 held-out scenes and their edits), rewritten after each pair."""
    rows, pictures = [], []
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind, source, target in matrix_pairs(session, kinds):
        report, before, after = demo_pair(session, replace(req, source=source, target=target),
                                          progress=progress, cancel=cancel)
        report.update(kind=kind, passes=passes(kind, report["metrics"]))
        rows.append(report)
        pictures += [before[:8], after[:8]]
        atomic_write_bytes(out_dir / "demo-matrix.json", json.dumps(rows, indent=2).encode())
        atomic_write_bytes(out_dir / "demo-matrix.md", matrix_markdown(rows).encode())
        atomic_write_bytes(out_dir / "demo-matrix.png", encode_png(Image.fromarray(grid(pictures, scale=2))))
        if on_row is not None:
            on_row(report)
    return rows
