"""`dclip bench`: times the engine against the faithful reference loop, in one run, on one device.

Rows: batched inversion (S_for 40), edits at (200, 40) and (40, 40), one fine-tune epoch per mode
(efficient, full chain) × (LoRA, full weights), the whole attribute (precompute + one epoch), and peak
memory. An accuracy guard measures the reconstruction MAE of every precision mode against fp32 and
picks the default; an ablation measures what each optimisation adds to UNet throughput.

This module runs the stages in order and assembles the result: `plan.py` sizes the work, `measure.py`
times it, `report.py` judges and shows it.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Optional

import torch

from ..errors import BadInput
from ..zoo.device import pick_device, pick_precision
from .measure import PRECISIONS, Bench
from .plan import LORA_RANK, T0, make_plan
from .report import SCHEMA, acceptance, attribute_row, table, write_json


def run_bench(config: str = "demo", quick: bool = False, device: Optional[str] = None, precision: str = "auto",
              json_path: Optional[str] = None, compile_models: bool = False,
              log: Callable[[str], None] = print) -> dict:
    """Runs the bench, logs its table, writes the JSON to `json_path` if given; returns the result."""
    dev = pick_device(device)  # an unknown or absent device is a BadInput
    _check_precision(precision, dev)
    bench = Bench(make_plan(config, quick, dev), config, dev, precision, compile_models, log)
    result = run(bench, quick)
    log("")
    log(table(result))
    if json_path:
        log(f"wrote {write_json(result, json_path)}")
    return result


def _check_precision(precision: str, dev: torch.device) -> None:
    """A forced precision must be one the guard measures and one the app would run on `dev`."""
    if precision not in ("auto", *PRECISIONS):
        raise BadInput(f"precision must be auto or one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "tf32":  # fp32 tensors with TF32 matmuls: not an autocast precision of the app
        if dev.type != "cuda":
            raise BadInput("tf32 exists on CUDA devices only")
        return
    if precision != "auto":
        pick_precision(precision, dev)  # zoo.device refuses what the app would not run (fp16 on a CPU, ...)


def run(bench: Bench, quick: bool) -> dict:
    """Every stage in order, timed and logged; the whole result as `dclip bench --json` writes it."""
    t_all = time.perf_counter()
    p, log = bench.plan, bench.log
    log(f"dclip bench: config {bench.config}{' --quick' if quick else ''} on {describe(bench.device)}")
    for n in p.notes:
        log(f"  note: {n}")
    steps = []

    def stage(name, fn):
        t = time.perf_counter()
        out = fn()
        steps.append((name, time.perf_counter() - t))
        log(f"  {name}: {time.perf_counter() - t:.1f} s")
        return out

    stage("build models", bench.setup)
    guard = stage("accuracy guard", bench.precision_guard)
    abl = stage("ablation", bench.ablation)
    inv, pre = stage("inversion", bench.inversion)
    edits = stage("edits", bench.edits)
    ft = stage("fine-tune", bench.finetune_rows)
    attribute = attribute_row(p, pre, ft)
    accept = acceptance(inv, edits, ft)
    return {
        "schema": SCHEMA, "config": bench.config, "quick": quick,
        "device": str(bench.device), "device_name": describe(bench.device), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "load_avg_at_start": _loadavg(),
        "models": {"unet": bench.unet_origin, "unet_params_m": round(bench.params_m, 2), "clip": bench.clip_origin,
                   "resolution": p.size},
        "plan": asdict(p), "t0": T0, "templates": len(bench.templates), "memory_kind": bench.mem_kind,
        "settings": {"precision": bench.precision, "channels_last": bench.channels_last,
                     "batch_invert": p.batch_invert, "batch_edit": p.batch_edit, "batch_train": p.batch_train,
                     "lora_rank": LORA_RANK, "torch_compile": bench.compile,
                     "torch_compile_rows": "compiled inversion and edit rows beside the eager ones"},
        "precision_guard": guard, "ablation": abl, "inversion": inv, "precompute": pre, "edits": edits,
        "finetune": ft, "attribute": attribute, "acceptance": accept,
        "stages_s": dict(steps), "wall_s": time.perf_counter() - t_all,
        "notes": p.notes + [
            "reference: fp32, batch 1, source CLIP embedding re-encoded every step, CLIP trainable, "
            "full-weight Adam, no checkpointing, reconstruction pass in precompute, loss.item() per step",
            f"reference runs {p.n_ref} image(s) per row; its cost is linear in images (batch 1), totals scaled",
            "text direction ΔT computed once per text pair in both loops, outside the timings",
        ],
    }


def _loadavg() -> Optional[list]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def describe(device: torch.device) -> str:
    """The machine a result was measured on: the GPU's name, or the CPU's and its thread count. Not
    zoo.device.describe: that is a status-bar line with free memory, which varies from run to run."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
