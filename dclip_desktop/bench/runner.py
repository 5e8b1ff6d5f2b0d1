"""`dclip bench`: times the engine against the faithful reference loop, in one run, on one device.

Rows: batched inversion (S_for 40), edits at (200, 40) and (40, 40), one fine-tune epoch per mode
(efficient, full chain) × (LoRA, full weights), the whole attribute (precompute + one epoch), and peak
memory. An accuracy guard measures the reconstruction MAE of every precision mode against fp32 and
picks the default; an ablation measures what each optimisation adds to UNet throughput.

The reference runs batch 1, so its cost is linear in the image count: it may run on fewer images
than the optimised path, and its totals are scaled per image (stated in the output).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..core.clip_loss import IMAGENET_TEMPLATES, DirectionalCLIPLoss
from ..core.compiled import CompiledUNet, compiles_on
from ..core.ddim import ddim_generate, ddim_invert
from ..core.finetune import EditLoss, FinetuneConfig, finetune, precompute_latents
from ..core.mixing import ModelDenoiser
from . import reference_loop as ref
from .models import build_clip, build_unet, test_images

SCHEMA = "dclip-bench/1"
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
DTYPES = {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# A precision mode may worsen the reconstruction MAE (vs the input) by at most this much over fp32:
# a quarter of the paper's Table 1 MAE (0.020, images in [−1, 1] scaled to [0, 1]).
MAE_TOLERANCE = 0.005
CHANNELS_LAST_MIN_GAIN = 1.03  # keep channels_last only when it is ≥ 3 % faster
GUARD_BUDGET_S = 60.0  # CPU only: skip a precision mode whose accuracy guard would take longer
T0 = 400
LORA_RANK = 8
SOURCE, TARGET = "photo", "sketch"


@dataclass
class Plan:
    """How much work each row does. `*_steps` are what is measured; the nominal steps are in `edits`."""

    size: int
    n_invert: int
    batch_invert: int
    inv_steps: int  # S_for measured (nominal 40)
    edits: list  # [(nominal S_for, nominal S_gen, measured S_for, measured S_gen)]
    n_edit: int
    batch_edit: int
    n_train: int
    batch_train: int
    train_steps: int  # S_gen measured (nominal 6)
    n_ref: int  # images the batch-1 reference runs per row
    guard_images: int
    guard_steps: int
    guard_size: int  # resolution of the accuracy guard (= size except ddpm256 --quick on CPU)
    ablation_calls: int
    templates: int
    warmup: bool = True
    ckpt_ablation: bool = True
    notes: list = field(default_factory=list)


def make_plan(config: str, quick: bool, device: torch.device) -> Plan:
    gpu = device.type == "cuda"
    if config == "demo":
        if quick:
            return Plan(32, 2, 2, 3, [(200, 40, 3, 2), (40, 40, 3, 2)], 2, 2, 2, 2, 2, 1, 1, 3, 32, 1, 1,
                        warmup=False, ckpt_ablation=False,
                        notes=["--quick: a smoke run; steps reduced (inversion S_for 3, edits (3,2), fine-tune 2 images"
                               " × S_gen 2); 'scaled' columns extrapolate to the nominal steps by UNet-call count"])
        # CPU: bf16/fp16 autocast run ~15× slower than fp32 here, so the guard uses fewer steps.
        guard_steps = 20 if gpu else 8
        return Plan(32, 32, 32, 40, [(200, 40, 200, 40), (40, 40, 40, 40)], 8, 8, 16, 8, 6, 2, 2 if not gpu else 4,
                    guard_steps, 32, 5, 8)
    if gpu:
        if quick:
            return Plan(256, 8, 8, 40, [(200, 40, 200, 40), (40, 40, 40, 40)], 4, 4, 8, 8, 6, 1, 4, 20, 256, 3, 8,
                        ckpt_ablation=False, notes=["--quick: 8 images instead of 50"])
        # fine-tune batch 8: with efficient mode's block checkpointing (on by default on CUDA) it
        # fits in ~7 GiB and runs faster per image than batch 4 without it (H100 probe)
        return Plan(256, 50, 25, 40, [(200, 40, 200, 40), (40, 40, 40, 40)], 16, 16, 50, 8, 6, 2, 8, 40, 256, 5, 8)
    if quick:
        # Warm-up stays on: at 256² a cold first call (allocations, oneDNN set-up) costs about one
        # forward, which in rows this short favoured whoever ran warm (fine-tune 2.1× cold, 1.3× warm).
        return Plan(256, 2, 2, 4, [(200, 40, 3, 3), (40, 40, 3, 3)], 1, 1, 1, 1, 2, 1, 1, 6, 64, 1, 2,
                    ckpt_ablation=False,
                    notes=["ddpm256 --quick on CPU: steps reduced (inversion S_for 4, edits (3,3), fine-tune 1 image"
                           " × S_gen 2, accuracy guard at 64² on the same architecture); the reference does the same"
                           " reduced work, so ratios are like-for-like; 'scaled' columns extrapolate by UNet calls"])
    return Plan(256, 8, 8, 40, [(200, 40, 200, 40), (40, 40, 40, 40)], 2, 2, 4, 2, 6, 1, 1, 10, 64, 2, 4,
                notes=["ddpm256 on CPU: image counts reduced (takes a long time)"])


# --- measuring -----------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _rss() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # Linux without psutil
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """CUDA: max allocated during the block. Elsewhere: peak process RSS, sampled every 5 ms."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "process_rss"

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._stop = threading.Event()
            self.peak = _rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss())


def timed(fn: Callable, device: torch.device) -> tuple[float, int, object]:
    """(seconds, peak bytes, result) of fn(), with device syncs at both ends only."""
    sync(device)
    with PeakMemory(device) as pm:
        t = time.perf_counter()
        out = fn()
        sync(device)
        dt = time.perf_counter() - t
    return dt, pm.peak, out


@contextlib.contextmanager
def precision_context(mode: str, device: torch.device):
    """fp32 on CUDA means true fp32 (TF32 off); tf32 turns TF32 on for matmuls and convolutions."""
    if device.type != "cuda":
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        on = mode != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _fmt_mem(b: int) -> str:
    return f"{b / 2**20:,.0f} MiB"


# --- the bench -----------------------------------------------------------------------------------


class Bench:
    def __init__(self, config: str, quick: bool, device: torch.device, precision: str = "auto",
                 compile_models: bool = False, log: Callable[[str], None] = print) -> None:
        self.config, self.quick, self.device = config, quick, device
        self.precision_arg = precision
        # CUDA: inductor + Triton; CPU: inductor's C++ backend with frozen weights (core/compiled.py)
        self.compile = compile_models and compiles_on(device.type)
        self.log = log
        self.plan = make_plan(config, quick, device)
        self.mem_kind = PeakMemory(device).kind

    # setup -------------------------------------------------------------------------------------
    def setup(self) -> None:
        dev = self.device
        self.base_ref, self.unet_origin = build_unet(self.config, dev)
        self.tuned_ref = copy.deepcopy(self.base_ref)
        self.clip, self.tokenizer, self.clip_origin = build_clip(self.config, dev)
        self.clip_ref = copy.deepcopy(self.clip)
        p = self.plan
        self.images = test_images(max(p.n_invert, p.n_edit, p.n_train, p.guard_images), p.size, dev)
        templates = IMAGENET_TEMPLATES[: p.templates]
        # ΔT once per text pair, in both loops: excluded from timings.
        probe = DirectionalCLIPLoss(self.clip, self.tokenizer, SOURCE, TARGET, templates=templates)
        self.templates = templates
        self.delta_t = probe.direction().detach()
        self.params_m = sum(q.numel() for q in self.base_ref.parameters()) / 1e6

    def den(self, model, dtype=None) -> ModelDenoiser:
        return ModelDenoiser(model, dtype)

    def fmt(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # accuracy guard ----------------------------------------------------------------------------
    def precision_guard(self) -> dict:
        p, dev = self.plan, self.device
        modes = [m for m in PRECISIONS if m != "tf32" or dev.type == "cuda"]
        x0 = test_images(p.guard_images, p.guard_size, dev, seed=1)
        s = p.guard_steps
        out, recon32, fp32_call = {}, None, float("nan")
        for mode in modes:
            dtype = DTYPES[mode]
            try:
                with precision_context(mode, dev):
                    if recon32 is not None and dev.type != "cuda":
                        # CPUs without bf16/fp16 units emulate them: probe one call and skip a mode whose
                        # guard would take over a minute (it cannot be the default there anyway).
                        probe, _, _ = timed(lambda dtype=dtype: ModelDenoiser(self.base_ref, dtype)(x0, 0), dev)
                        if probe * (2 * s - 1) > GUARD_BUDGET_S:
                            out[mode] = {"supported": True, "skipped": True, "passes": False,
                                         "probe_s_per_call": probe, "fp32_s_per_call": fp32_call,
                                         "why": f"{probe / fp32_call:.0f}× slower than fp32 on this CPU"}
                            continue
                    if p.warmup:
                        ModelDenoiser(self.base_ref, dtype)(x0, 0)
                    dt, _, rec = timed(lambda dtype=dtype: ddim_generate(
                        self.den(self.base_ref, dtype), ddim_invert(self.den(self.base_ref, dtype), x0, T0, s),
                        T0, s), dev)
            except (RuntimeError, NotImplementedError, TypeError) as exc:
                out[mode] = {"supported": False, "error": str(exc).splitlines()[0][:200]}
                continue
            if recon32 is None:
                fp32_call = dt / (2 * s - 1)
            mae_in = float((rec - x0).abs().mean() / 2)  # in [0, 1] units, as the paper reports
            if recon32 is None:
                recon32 = rec
            mae_32 = float((rec - recon32).abs().mean() / 2)
            out[mode] = {"supported": True, "recon_mae": mae_in, "mae_vs_fp32": mae_32, "seconds": dt,
                         "finite": bool(torch.isfinite(rec).all())}
        base_mae = out["fp32"]["recon_mae"]
        for row in out.values():
            if row.get("supported") and not row.get("skipped"):
                row["passes"] = row["finite"] and row["recon_mae"] <= base_mae + MAE_TOLERANCE
        passing = [m for m in modes if out[m].get("passes")]
        if self.precision_arg != "auto":
            default, why = self.precision_arg, "forced by --precision"
        else:
            default = min(passing, key=lambda m: out[m]["seconds"])
            why = "fastest mode within tolerance on this device"
        self.precision = default
        self.dtype = DTYPES[default]
        return {"tolerance_recon_mae_over_fp32": MAE_TOLERANCE, "images": p.guard_images, "resolution": p.guard_size,
                "t0": T0, "steps": [s, s], "modes": out, "default": default, "why": why,
                "mae_units": "mean |x − x̂| with images mapped to [0, 1]"}

    # ablation ----------------------------------------------------------------------------------
    def ablation(self) -> list[dict]:
        """Seconds per image per UNet forward, each optimisation added in turn (inversion workload)."""
        p, dev = self.plan, self.device
        b = p.batch_invert
        x1 = self.images[:1]
        xb = self.images[:b]
        rows = []

        def rate(model, x, dtype, mode, label):
            den = ModelDenoiser(model, dtype)
            with precision_context(mode, dev), torch.no_grad():
                if p.warmup:
                    den(x, 100)
                dt, _, _ = timed(lambda: [den(x, 100 + i) for i in range(p.ablation_calls)], dev)
            per = dt / (p.ablation_calls * len(x))
            rows.append({"variant": label, "batch": len(x), "s_per_image_forward": per,
                         "speedup_vs_reference": rows[0]["s_per_image_forward"] / per if rows else 1.0})
            return per

        rate(self.base_ref, x1, None, "fp32", "reference: fp32, batch 1")
        fp32_b = rate(self.base_ref, xb, None, "fp32", f"+ batching (batch {b})")
        best = fp32_b
        if dev.type == "cuda":
            best = rate(self.base_ref, xb, None, "tf32", "+ TF32")
        if self.dtype is not None:
            best = rate(self.base_ref, xb, self.dtype, self.precision, f"+ {self.precision} autocast")
        cl_model = copy.deepcopy(self.base_ref).to(memory_format=torch.channels_last)
        cl = rate(cl_model, xb.contiguous(memory_format=torch.channels_last), self.dtype, self.precision,
                  "+ channels_last")
        self.channels_last = best / cl >= CHANNELS_LAST_MIN_GAIN
        rows[-1]["kept"] = self.channels_last
        if self.compile:
            try:
                compiled = CompiledUNet(cl_model if self.channels_last else copy.deepcopy(self.base_ref))
                xin = self.fmt(xb)
                with precision_context(self.precision, dev), torch.no_grad():  # compiled for inference
                    t_c, _, _ = timed(lambda: ModelDenoiser(compiled, self.dtype)(xin, 100), dev)
                if compiled.failed:
                    raise RuntimeError(compiled.failed)
                rate(compiled, xin, self.dtype, self.precision, "+ torch.compile")
                rows[-1]["compile_s"] = t_c
                rows[-1]["kept"] = False
                rows[-1]["note"] = "measured only: the main rows run uncompiled (compile time per model, no retrace)"
            except Exception as exc:  # noqa: BLE001 - any compiler failure only drops this row
                rows.append({"variant": "+ torch.compile", "error": str(exc).splitlines()[0][:200]})
        self.base_opt = cl_model if self.channels_last else copy.deepcopy(self.base_ref)
        self.tuned_opt = copy.deepcopy(self.base_opt)
        return rows

    # main rows ---------------------------------------------------------------------------------
    def inversion(self) -> tuple[dict, dict]:
        p, dev = self.plan, self.device
        x = self.fmt(self.images[: p.n_invert])
        with precision_context(self.precision, dev):
            if p.warmup:
                ModelDenoiser(self.base_opt, self.dtype)(x[: p.batch_invert], 0)
            dt, mem, lat = timed(lambda: precompute_latents(self.base_opt, x, T0, p.inv_steps,
                                                            batch_size=p.batch_invert, autocast_dtype=self.dtype), dev)
        self.latents = lat
        xr = self.images[: p.n_ref]
        with precision_context("fp32", dev):
            if p.warmup:
                ref.ref_invert(self.base_ref, xr[:1], T0, 2)
            rdt, rmem, (_, phases) = timed(lambda: ref.ref_precompute(self.base_ref, xr, T0, p.inv_steps), dev)
        scale = (40 - 1) / (p.inv_steps - 1)
        ref_inv_per = phases["inversion_s"] / p.n_ref
        ref_pre_per = rdt / p.n_ref
        inv = {"images": p.n_invert, "batch": p.batch_invert, "s_for": p.inv_steps, "seconds": dt,
               "images_per_s": p.n_invert / dt, "images_per_s_at_s_for_40": p.n_invert / dt / scale,
               "peak_mem": mem, "reference": {"images": p.n_ref, "s_per_image": ref_inv_per,
                                             "images_per_s": 1 / ref_inv_per, "peak_mem": rmem},
               "ratio": ref_inv_per / (dt / p.n_invert)}
        pre = {"s_per_image": dt / p.n_invert, "reference_s_per_image": ref_pre_per,
               "reference_includes": "inversion + reconstruction pass", "ratio": ref_pre_per / (dt / p.n_invert)}
        if self.compile:
            den = ModelDenoiser(CompiledUNet(self.base_opt), self.dtype)
            with precision_context(self.precision, dev), torch.no_grad():  # compile for the batch shape
                t_c, _, _ = timed(lambda: den(x[: p.batch_invert], 0), dev)
                cdt, cmem, _ = timed(lambda: precompute_latents(den, x, T0, p.inv_steps, batch_size=p.batch_invert),
                                     dev)
            if den.model.failed:
                self.log(f"  torch.compile failed: {den.model.failed}")
            else:
                inv["compiled"] = {"seconds": cdt, "images_per_s": p.n_invert / cdt, "peak_mem": cmem,
                                   "compile_s": t_c, "ratio": ref_inv_per / (cdt / p.n_invert)}
        return inv, pre

    def edits(self) -> list[dict]:
        rows = self._edit_rows(self.base_opt, self.tuned_opt)
        if self.compile:  # what the batch job's compile_batches setting runs (core/compiled.py)
            base_c, tuned_c = CompiledUNet(self.base_opt), CompiledUNet(self.tuned_opt)
            x = self.fmt(self.images[: self.plan.batch_edit])
            with precision_context(self.precision, self.device):  # compile both for the batch shape
                t_c, _, _ = timed(lambda: ddim_generate(self.den(tuned_c, self.dtype), ddim_invert(
                    self.den(base_c, self.dtype), x, T0, 2), T0, 2), self.device)
            if base_c.failed or tuned_c.failed:
                self.log(f"  torch.compile failed: {base_c.failed or tuned_c.failed}")
            else:
                refs = {(r["s_for"], r["s_gen"]): r["reference"] for r in rows}
                for r in self._edit_rows(base_c, tuned_c, refs):
                    rows.append({**r, "compiled": True, "compile_s": t_c})
        return rows

    def _edit_rows(self, base, tuned, refs: Optional[dict] = None) -> list[dict]:
        """Edit rows for (base, tuned); `refs` reuses reference timings measured for earlier rows."""
        p, dev = self.plan, self.device
        rows, done = [], {}
        for nf, ng, mf, mg in p.edits:
            scale = (nf - 1 + ng) / (mf - 1 + mg)
            if (mf, mg) not in done:
                x = self.fmt(self.images[: p.n_edit])

                def run_edit(x=x, mf=mf, mg=mg):
                    outs = []
                    for chunk in x.split(p.batch_edit):
                        lat = ddim_invert(self.den(base, self.dtype), chunk, T0, mf)
                        outs.append(ddim_generate(self.den(tuned, self.dtype), lat, T0, mg))
                    return torch.cat(outs)

                with precision_context(self.precision, dev):
                    dt, mem, _ = timed(run_edit, dev)
                if refs is not None:
                    r = refs[(nf, ng)]
                    done[(mf, mg)] = (dt / p.n_edit, mem, r["s_per_image"] / scale, r["peak_mem"])
                else:
                    xr = self.images[: p.n_ref]
                    with precision_context("fp32", dev):
                        rdt, rmem, _ = timed(lambda xr=xr, mf=mf, mg=mg: ref.ref_edit(
                            self.base_ref, self.tuned_ref, xr, T0, mf, mg), dev)
                    done[(mf, mg)] = (dt / p.n_edit, mem, rdt / p.n_ref, rmem)
            per, mem, rper, rmem = done[(mf, mg)]
            rows.append({"s_for": nf, "s_gen": ng, "measured_steps": [mf, mg], "images": p.n_edit,
                         "batch": p.batch_edit, "s_per_image": per * scale, "measured_s_per_image": per,
                         "scaled": scale != 1.0, "peak_mem": mem,
                         "reference": {"images": p.n_ref, "s_per_image": rper * scale, "peak_mem": rmem},
                         "ratio": rper / per})
        return rows

    def _loss(self, cfg: FinetuneConfig) -> EditLoss:
        clip_loss = DirectionalCLIPLoss(self.clip, self.tokenizer, SOURCE, TARGET, templates=self.templates,
                                        loss_form=cfg.clip_loss_form)
        return EditLoss(clip_loss, cfg)

    def finetune_rows(self) -> list[dict]:
        p, dev = self.plan, self.device
        x0 = self.fmt(self.images[: p.n_train])
        lat = self.fmt(self.latents[: p.n_train]) if len(self.latents) >= p.n_train else None
        if lat is None:
            with precision_context(self.precision, dev):
                lat = precompute_latents(self.base_opt, x0, T0, p.inv_steps, batch_size=p.batch_invert,
                                         autocast_dtype=self.dtype)
        scale = 6 / p.train_steps
        refs = {}
        xr, lr_ = self.images[: p.n_ref], self.latents[: p.n_ref]
        if p.warmup:  # like the optimised rows: no first backward's allocations in the timed epoch
            with precision_context("fp32", dev):
                ref.ref_finetune_epoch(self.base_ref, self.clip_ref, self.delta_t, xr[:1], lr_[:1], t0=T0,
                                       s_gen=2, mode="efficient")
        for mode in ("efficient", "full_chain"):
            with precision_context("fp32", dev):
                rdt, rmem, _ = timed(lambda mode=mode: ref.ref_finetune_epoch(
                    self.base_ref, self.clip_ref, self.delta_t, xr, lr_, t0=T0, s_gen=p.train_steps, mode=mode), dev)
            refs[mode] = (rdt / p.n_ref, rmem)
        variants = [(m, r) for m in ("efficient", "full_chain") for r in (LORA_RANK, None)]
        app_models = sum(t.numel() * t.element_size() for m in (self.base_opt, self.clip)
                         for t in [*m.parameters(), *m.buffers()])  # the app's resident base UNet + CLIP
        if p.ckpt_ablation:
            variants.append(("full_chain", LORA_RANK, "no_checkpoint"))
        rows = []
        for v in variants:
            mode, rank = v[0], v[1]
            # len(v) > 2: the gradient-checkpointing ablation, the same epoch without it
            cfg = FinetuneConfig(t0=T0, s_for=max(p.inv_steps, 2), s_gen=p.train_steps, epochs=1, mode=mode,
                                 lora_rank=rank, batch_size=p.batch_train, lambda_face=0.0,
                                 checkpointing=len(v) == 2)
            loss = self._loss(cfg)
            resident = torch.cuda.memory_allocated(dev) if dev.type == "cuda" else 0
            try:
                with precision_context(self.precision, dev):
                    if p.warmup and not rows:
                        finetune(self.base_opt, x0[:1], lat[:1], loss, dataclass_replace(cfg, batch_size=1, s_gen=2),
                                 autocast_dtype=self.dtype)
                    dt, mem, res = timed(lambda loss=loss, cfg=cfg: finetune(self.base_opt, x0, lat, loss, cfg,
                                                                         autocast_dtype=self.dtype), dev)
            except torch.cuda.OutOfMemoryError:
                if len(v) == 2:
                    raise
                # the ablation without checkpointing keeps S_gen passes of activations: running out
                # of memory there is the finding, not a failure of the bench
                torch.cuda.empty_cache()
                self.log(f"  full_chain without checkpointing: CUDA out of memory at batch {p.batch_train}")
                self.plan.notes.append(f"full_chain without checkpointing ran out of CUDA memory at batch"
                                       f" {p.batch_train} × S_gen {p.train_steps}")
                continue
            rper, rmem = refs[mode]
            rows.append({"mode": mode, "weights": "lora" if rank else "full",
                         # full chain: per UNet pass; efficient: per block (the config's device rule)
                         "checkpointing": cfg.checkpointing if mode == "full_chain"
                         else cfg.uses_block_checkpointing(dev.type),
                         "images": p.n_train, "batch": p.batch_train, "s_gen": p.train_steps,
                         "seconds_per_epoch": dt, "s_per_image": dt / p.n_train,
                         "s_per_epoch_at_s_gen_6": dt * scale, "optimizer_steps": len(res.history),
                         "peak_mem": mem,
                         # CUDA: what the app would hold; the bench also keeps reference copies resident
                         "peak_mem_app": mem - resident + app_models if dev.type == "cuda" else None,
                         "reference": {"images": p.n_ref, "s_per_image": rper,
                                       "seconds_per_epoch": rper * p.n_train, "peak_mem": rmem},
                         "ratio": rper / (dt / p.n_train)})
        return rows

    # driver ------------------------------------------------------------------------------------
    def run(self) -> dict:
        t_all = time.perf_counter()
        p = self.plan
        self.log(f"dclip bench: config {self.config}{' --quick' if self.quick else ''} on {describe(self.device)}")
        for n in p.notes:
            self.log(f"  note: {n}")
        steps = []

        def stage(name, fn):
            t = time.perf_counter()
            out = fn()
            steps.append((name, time.perf_counter() - t))
            self.log(f"  {name}: {time.perf_counter() - t:.1f} s")
            return out

        stage("build models", self.setup)
        guard = stage("accuracy guard", self.precision_guard)
        abl = stage("ablation", self.ablation)
        inv, pre = stage("inversion", self.inversion)
        edits = stage("edits", self.edits)
        ft = stage("fine-tune", self.finetune_rows)
        eff_lora = next(r for r in ft if r["mode"] == "efficient" and r["weights"] == "lora")
        attribute = {
            "images": p.n_train, "s_for": p.inv_steps, "s_gen": p.train_steps,
            "seconds": pre["s_per_image"] * p.n_train + eff_lora["seconds_per_epoch"],
            "reference_seconds": (pre["reference_s_per_image"] + eff_lora["reference"]["s_per_image"]) * p.n_train,
            "what": "precompute (inversion) + 1 efficient LoRA epoch; reference: inversion + reconstruction"
                    " + 1 efficient full-weight epoch, batch 1",
        }
        attribute["ratio"] = attribute["reference_seconds"] / attribute["seconds"]
        ft_ratio = {f"{r['mode']}_{r['weights']}": r["ratio"] for r in ft if r["checkpointing"] or
                    r["mode"] == "efficient"}
        acceptance = {
            "finetune_ratio_default (efficient+LoRA)": eff_lora["ratio"],
            "finetune_ratio_min": min(ft_ratio.values()),
            "finetune_goal": 3.0,
            "inversion_ratio": inv["ratio"],
            "edit_ratio_min": min(r["ratio"] for r in edits if not r.get("compiled")),
            "inversion_edit_goal": 2.0,
        }
        acceptance["finetune_ok"] = acceptance["finetune_ratio_default (efficient+LoRA)"] >= 3.0
        acceptance["inversion_edit_ok"] = min(inv["ratio"], acceptance["edit_ratio_min"]) >= 2.0
        compiled_edits = [r["ratio"] for r in edits if r.get("compiled")]
        if "compiled" in inv and compiled_edits:  # what `dclip batch --compile` runs
            acceptance["inversion_ratio_compiled"] = inv["compiled"]["ratio"]
            acceptance["edit_ratio_min_compiled"] = min(compiled_edits)
            acceptance["inversion_edit_ok_compiled"] = min(inv["compiled"]["ratio"], min(compiled_edits)) >= 2.0
        return {
            "schema": SCHEMA, "config": self.config, "quick": self.quick,
            "device": str(self.device), "device_name": describe(self.device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "load_avg_at_start": _loadavg(),
            "models": {"unet": self.unet_origin, "unet_params_m": round(self.params_m, 2), "clip": self.clip_origin,
                       "resolution": p.size},
            "plan": asdict(p), "t0": T0, "templates": len(self.templates), "memory_kind": self.mem_kind,
            "settings": {"precision": self.precision, "channels_last": self.channels_last,
                         "batch_invert": p.batch_invert, "batch_edit": p.batch_edit, "batch_train": p.batch_train,
                         "lora_rank": LORA_RANK, "torch_compile": self.compile,
                         "torch_compile_rows": "compiled inversion and edit rows beside the eager ones"},
            "precision_guard": guard, "ablation": abl, "inversion": inv, "precompute": pre, "edits": edits,
            "finetune": ft, "attribute": attribute, "acceptance": acceptance,
            "stages_s": dict(steps), "wall_s": time.perf_counter() - t_all,
            "notes": p.notes + [
                "reference: fp32, batch 1, source CLIP embedding re-encoded every step, CLIP trainable, "
                "full-weight Adam, no checkpointing, reconstruction pass in precompute, loss.item() per step",
                f"reference runs {p.n_ref} image(s) per row; its cost is linear in images (batch 1), totals scaled",
                "text direction ΔT computed once per text pair in both loops, outside the timings",
            ],
        }


def dataclass_replace(cfg: FinetuneConfig, **kw) -> FinetuneConfig:
    from dataclasses import replace

    return replace(cfg, **kw)


def _loadavg() -> Optional[list]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def resolve_device(name: Optional[str]) -> torch.device:
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return dev


# --- output --------------------------------------------------------------------------------------


def table(result: dict) -> str:
    rows = [("task", "optimised", "reference", "ratio", "peak mem (opt / ref)")]
    inv = result["inversion"]
    rows.append((f"inversion S_for {inv['s_for']} (img/s)", f"{inv['images_per_s']:.2f}",
                 f"{inv['reference']['images_per_s']:.2f}", f"{inv['ratio']:.2f}×",
                 f"{_fmt_mem(inv['peak_mem'])} / {_fmt_mem(inv['reference']['peak_mem'])}"))
    if "compiled" in inv:
        c = inv["compiled"]
        rows.append((f"inversion S_for {inv['s_for']} compiled ({c['compile_s']:.0f} s once)",
                     f"{c['images_per_s']:.2f}", f"{inv['reference']['images_per_s']:.2f}", f"{c['ratio']:.2f}×",
                     f"{_fmt_mem(c['peak_mem'])} / {_fmt_mem(inv['reference']['peak_mem'])}"))
    pre = result["precompute"]
    rows.append(("precompute (s/img, ref +recon)", f"{pre['s_per_image']:.3f}", f"{pre['reference_s_per_image']:.3f}",
                 f"{pre['ratio']:.2f}×", ""))
    for e in result["edits"]:
        label = f"edit ({e['s_for']},{e['s_gen']}) s/img"
        if e["scaled"]:
            label += f" [meas. {e['measured_steps'][0]},{e['measured_steps'][1]}, scaled]"
        if e.get("compiled"):
            label += f" compiled ({e['compile_s']:.0f} s once)"
        rows.append((label, f"{e['s_per_image']:.3f}", f"{e['reference']['s_per_image']:.3f}", f"{e['ratio']:.2f}×",
                     f"{_fmt_mem(e['peak_mem'])} / {_fmt_mem(e['reference']['peak_mem'])}"))
    for f in result["finetune"]:
        ck = " ckpt" if f["checkpointing"] else ("" if f["mode"] == "efficient" else " no-ckpt")
        label = f"epoch {f['mode']}{ck} {f['weights']} ({f['images']} img, S_gen {f['s_gen']}) s"
        rows.append((label, f"{f['seconds_per_epoch']:.2f}", f"{f['reference']['seconds_per_epoch']:.2f}",
                     f"{f['ratio']:.2f}×", f"{_fmt_mem(f['peak_mem'])} / {_fmt_mem(f['reference']['peak_mem'])}"))
    a = result["attribute"]
    rows.append((f"attribute ({a['images']} img, precompute+epoch) s", f"{a['seconds']:.2f}",
                 f"{a['reference_seconds']:.2f}", f"{a['ratio']:.2f}×", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    g = result["precision_guard"]
    lines.append("")
    lines.append(f"accuracy guard (recon MAE at {g['resolution']}², t0 {g['t0']}, steps {g['steps']}, "
                 f"tolerance fp32 + {g['tolerance_recon_mae_over_fp32']}):")
    for m, r in g["modes"].items():
        if r.get("skipped"):
            lines.append(f"  {m:5s} skipped: {r['why']}")
        elif r.get("supported"):
            lines.append(f"  {m:5s} MAE {r['recon_mae']:.5f}  vs fp32 {r['mae_vs_fp32']:.5f}  {r['seconds']:.2f} s  "
                         f"{'ok' if r['passes'] else 'FAILS'}")
        else:
            lines.append(f"  {m:5s} unsupported: {r['error']}")
    lines.append(f"  default: {g['default']} ({g['why']})")
    lines.append("ablation (s per image per UNet forward):")
    for r in result["ablation"]:
        if "error" in r:
            lines.append(f"  {r['variant']}: failed: {r['error']}")
            continue
        kept = {True: " (kept)", False: " (not kept)"}.get(r.get("kept"), "")
        lines.append(f"  {r['variant']:28s} {r['s_per_image_forward']:.4f}  {r['speedup_vs_reference']:.2f}×{kept}")
    acc = result["acceptance"]
    lines.append(f"acceptance: fine-tune (efficient+LoRA) {acc['finetune_ratio_default (efficient+LoRA)']:.2f}× "
                 f"(goal ≥ 3: {'met' if acc['finetune_ok'] else 'NOT met'}); inversion {acc['inversion_ratio']:.2f}×, "
                 f"edit min {acc['edit_ratio_min']:.2f}× (goal ≥ 2: {'met' if acc['inversion_edit_ok'] else 'NOT met'})")
    if "inversion_ratio_compiled" in acc:
        lines.append(f"  compiled: inversion {acc['inversion_ratio_compiled']:.2f}×, edit min "
                     f"{acc['edit_ratio_min_compiled']:.2f}× (goal ≥ 2: "
                     f"{'met' if acc['inversion_edit_ok_compiled'] else 'NOT met'})")
    if result["device"].startswith("cuda"):
        lines.extend(gpu_goals(result))
    return "\n".join(lines)


def gpu_goals(result: dict) -> list[str]:
    inv, a = result["inversion"], result["attribute"]
    eager = [e for e in result["edits"] if not e.get("compiled")]
    e200 = next(e for e in eager if (e["s_for"], e["s_gen"]) == (200, 40))
    e40 = next(e for e in eager if (e["s_for"], e["s_gen"]) == (40, 40))
    compiled = {(e["s_for"], e["s_gen"]): e for e in result["edits"] if e.get("compiled")}
    per_img_attr = a["seconds"] / a["images"]
    # the app's default fine-tune is efficient + LoRA; full chain is opt-in, reported beside it
    peak = {f["mode"]: f.get("peak_mem_app") or f["peak_mem"] for f in result["finetune"]
            if f["weights"] == "lora" and f["checkpointing"]}
    c200, c40 = compiled.get((200, 40)), compiled.get((40, 40))
    lines = [
        "GPU goals (issue 7):",
        f"  attribute fine-tune, 50 images, precompute included: {per_img_attr * 50:.1f} s (goal ≤ 10 s)",
        f"  (200,40) edit: {e200['s_per_image']:.3f} s/image at batch {e200['batch']} (goal ≤ 0.5 s)"
        + (f"; compiled {c200['s_per_image']:.3f}" if c200 else ""),
        f"  1,500-image batch at (40,40): {e40['s_per_image'] * 1500 / 60:.1f} min (goal ≤ 4 min)"
        + (f"; compiled {c40['s_per_image'] * 1500 / 60 + c40['compile_s'] / 60:.1f} min, compiling included"
           if c40 else ""),
    ]
    if "efficient" in peak:
        lines.append(f"  fine-tune peak memory (efficient, LoRA; base UNet + CLIP + fine-tune, without the bench's"
                     f" reference copies): {peak['efficient'] / 1e9:.2f} GB (goal ≤ 8 GB)"
                     + (f"; full chain {peak['full_chain'] / 1e9:.2f} GB" if "full_chain" in peak else ""))
    lines.append(f"  inversion at S_for 40: {inv['images_per_s_at_s_for_40']:.1f} images/s")
    return lines


def run_bench(config: str = "demo", quick: bool = False, device: Optional[str] = None, precision: str = "auto",
              json_path: Optional[str] = None, compile_models: bool = False,
              log: Callable[[str], None] = print) -> dict:
    dev = resolve_device(device)
    if precision not in ("auto", *PRECISIONS):
        raise ValueError(f"precision must be auto or one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "tf32" and dev.type != "cuda":
        raise ValueError("tf32 exists on CUDA devices only")
    bench = Bench(config, quick, dev, precision, compile_models, log)
    result = bench.run()
    log("")
    log(table(result))
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=_json_default))
        os.replace(tmp, path)
        log(f"wrote {path}")
    return result


def _json_default(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)
