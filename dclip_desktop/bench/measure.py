"""The timed runs of `dclip bench`: our loop against the faithful reference loop (`reference_loop.py`),
row by row, on one device, as the plan sizes them.

Stages run in order and hand state on: the accuracy guard picks the precision, the ablation decides
channels_last and makes the optimised models, inversion makes the latents that fine-tuning trains on.
The reference runs batch 1 in fp32, so its cost is linear in the image count: it runs on `plan.n_ref`
images and its totals are scaled per image.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Optional

import torch

from ..core.clip_loss import IMAGENET_TEMPLATES, DirectionalCLIPLoss
from ..core.compiled import CompiledUNet, compiles_on
from ..core.ddim import ddim_generate, ddim_invert
from ..core.finetune import EditLoss, FinetuneConfig, finetune, precompute_latents
from ..core.mixing import ModelDenoiser
from ..zoo.device import pick_precision
from . import reference_loop as ref
from .models import build_clip, build_unet, test_images
from .plan import LORA_RANK, SOURCE, T0, TARGET, Plan
from .timing import PeakMemory, precision_context, timed

# The modes the accuracy guard measures, and the autocast dtype each runs in (tf32: fp32 tensors, TF32
# matmuls). The guard measures every mode torch can run here, also those the app would not choose.
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
DTYPES = {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# A precision mode may worsen the reconstruction MAE (vs the input) by at most this much over fp32:
# a quarter of the paper's Table 1 MAE (0.020, images in [−1, 1] scaled to [0, 1]).
MAE_TOLERANCE = 0.005
CHANNELS_LAST_MIN_GAIN = 1.03  # keep channels_last only when it is ≥ 3 % faster
GUARD_BUDGET_S = 60.0  # CPU only: skip a precision mode whose accuracy guard would take longer


def app_runs(mode: str, device: torch.device) -> bool:
    """Whether the app would run `mode` on `device` (zoo.device's rule): the guard picks among these only,
    so the rows time what the app runs. tf32 is fp32 autocast-wise, with TF32 matmuls on CUDA."""
    if mode == "tf32":
        return device.type == "cuda"
    try:
        pick_precision(mode, device)
    except ValueError:
        return False
    return True


class Bench:
    """One bench run's models and measurements. `precision` is "auto" (the guard's choice) or a mode."""

    def __init__(self, plan: Plan, config: str, device: torch.device, precision: str = "auto",
                 compile_models: bool = False, log: Callable[[str], None] = print) -> None:
        self.plan, self.config, self.device = plan, config, device
        self.precision_arg = precision
        # CUDA: inductor + Triton; CPU: inductor's C++ backend with frozen weights (core/compiled.py)
        self.compile = compile_models and compiles_on(device.type)
        self.log = log
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

    def fmt(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # accuracy guard ----------------------------------------------------------------------------
    def precision_guard(self) -> dict:
        """Reconstruction MAE of each precision mode against fp32; sets the precision the rows run in."""
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
                        ModelDenoiser(self.base_ref, dtype),
                        ddim_invert(ModelDenoiser(self.base_ref, dtype), x0, T0, s), T0, s), dev)
            except (RuntimeError, NotImplementedError, TypeError) as exc:
                out[mode] = {"supported": False, "error": str(exc).splitlines()[0][:200]}
                continue
            if recon32 is None:
                fp32_call = dt / (2 * s - 1)
                recon32 = rec
            mae_in = float((rec - x0).abs().mean() / 2)  # in [0, 1] units, as the paper reports
            mae_32 = float((rec - recon32).abs().mean() / 2)
            out[mode] = {"supported": True, "recon_mae": mae_in, "mae_vs_fp32": mae_32, "seconds": dt,
                         "finite": bool(torch.isfinite(rec).all())}
        default, why = self._choose_precision(out, modes)
        return {"tolerance_recon_mae_over_fp32": MAE_TOLERANCE, "images": p.guard_images, "resolution": p.guard_size,
                "t0": T0, "steps": [s, s], "modes": out, "default": default, "why": why,
                "mae_units": "mean |x − x̂| with images mapped to [0, 1]"}

    def _choose_precision(self, out: dict, modes: list) -> tuple[str, str]:
        """Marks which measured modes pass; the forced mode, else the fastest passing one the app runs."""
        base_mae = out["fp32"]["recon_mae"]
        for row in out.values():
            if row.get("supported") and not row.get("skipped"):
                row["passes"] = row["finite"] and row["recon_mae"] <= base_mae + MAE_TOLERANCE
        passing = [m for m in modes if out[m].get("passes") and app_runs(m, self.device)]
        if self.precision_arg != "auto":
            default, why = self.precision_arg, "forced by --precision"
        else:
            default = min(passing, key=lambda m: out[m]["seconds"])
            why = "fastest mode within tolerance on this device"
        self.precision = default
        self.dtype = DTYPES[default]
        return default, why

    # ablation ----------------------------------------------------------------------------------
    def ablation(self) -> list[dict]:
        """Seconds per image per UNet forward, each optimisation added in turn (inversion workload);
        decides channels_last and makes the optimised models the rows run."""
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
        """(inversion row, precompute row); keeps the latents for fine-tuning."""
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
            compiled = self._compiled_inversion(x, ref_inv_per)
            if compiled is not None:
                inv["compiled"] = compiled
        return inv, pre

    def _compiled_inversion(self, x: torch.Tensor, ref_inv_per: float) -> Optional[dict]:
        p, dev = self.plan, self.device
        den = ModelDenoiser(CompiledUNet(self.base_opt), self.dtype)
        with precision_context(self.precision, dev), torch.no_grad():  # compile for the batch shape
            t_c, _, _ = timed(lambda: den(x[: p.batch_invert], 0), dev)
            cdt, cmem, _ = timed(lambda: precompute_latents(den, x, T0, p.inv_steps, batch_size=p.batch_invert), dev)
        if den.model.failed:
            self.log(f"  torch.compile failed: {den.model.failed}")
            return None
        return {"seconds": cdt, "images_per_s": p.n_invert / cdt, "peak_mem": cmem,
                "compile_s": t_c, "ratio": ref_inv_per / (cdt / p.n_invert)}

    def edits(self) -> list[dict]:
        rows = self._edit_rows(self.base_opt, self.tuned_opt)
        if self.compile:  # what the batch job's compile_batches setting runs (core/compiled.py)
            base_c, tuned_c = CompiledUNet(self.base_opt), CompiledUNet(self.tuned_opt)
            x = self.fmt(self.images[: self.plan.batch_edit])
            with precision_context(self.precision, self.device):  # compile both for the batch shape
                t_c, _, _ = timed(lambda: ddim_generate(ModelDenoiser(tuned_c, self.dtype), ddim_invert(
                    ModelDenoiser(base_c, self.dtype), x, T0, 2), T0, 2), self.device)
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
                        lat = ddim_invert(ModelDenoiser(base, self.dtype), chunk, T0, mf)
                        outs.append(ddim_generate(ModelDenoiser(tuned, self.dtype), lat, T0, mg))
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

    def _reference_epochs(self) -> dict:
        """{mode: (seconds per image, peak bytes)} of one reference fine-tune epoch per mode."""
        p, dev = self.plan, self.device
        xr, lr_ = self.images[: p.n_ref], self.latents[: p.n_ref]
        if p.warmup:  # like the optimised rows: no first backward's allocations in the timed epoch
            with precision_context("fp32", dev):
                ref.ref_finetune_epoch(self.base_ref, self.clip_ref, self.delta_t, xr[:1], lr_[:1], t0=T0,
                                       s_gen=2, mode="efficient")
        refs = {}
        for mode in ("efficient", "full_chain"):
            with precision_context("fp32", dev):
                rdt, rmem, _ = timed(lambda mode=mode: ref.ref_finetune_epoch(
                    self.base_ref, self.clip_ref, self.delta_t, xr, lr_, t0=T0, s_gen=p.train_steps, mode=mode), dev)
            refs[mode] = (rdt / p.n_ref, rmem)
        return refs

    def finetune_rows(self) -> list[dict]:
        """One epoch per (mode, LoRA or full weights), plus full chain without checkpointing when planned."""
        p, dev = self.plan, self.device
        x0 = self.fmt(self.images[: p.n_train])
        lat = self.fmt(self.latents[: p.n_train]) if len(self.latents) >= p.n_train else None
        if lat is None:
            with precision_context(self.precision, dev):
                lat = precompute_latents(self.base_opt, x0, T0, p.inv_steps, batch_size=p.batch_invert,
                                         autocast_dtype=self.dtype)
        scale = 6 / p.train_steps
        refs = self._reference_epochs()
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
                        finetune(self.base_opt, x0[:1], lat[:1], loss, replace(cfg, batch_size=1, s_gen=2),
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
