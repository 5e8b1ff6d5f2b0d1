"""What `dclip bench` concludes from its measurements and how it shows them: the attribute total,
the acceptance goals, the table it prints and the JSON file it writes."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

SCHEMA = "dclip-bench/1"
FINETUNE_GOAL = 3.0  # the default fine-tune (efficient + LoRA) at least this much faster than the reference
INVERSION_EDIT_GOAL = 2.0


def attribute_row(plan, pre: dict, finetune: list[dict]) -> dict:
    """A whole attribute: precompute plus one efficient LoRA epoch, against the reference's equivalent."""
    eff_lora = next(r for r in finetune if r["mode"] == "efficient" and r["weights"] == "lora")
    row = {
        "images": plan.n_train, "s_for": plan.inv_steps, "s_gen": plan.train_steps,
        "seconds": pre["s_per_image"] * plan.n_train + eff_lora["seconds_per_epoch"],
        "reference_seconds": (pre["reference_s_per_image"] + eff_lora["reference"]["s_per_image"]) * plan.n_train,
        "what": "precompute (inversion) + 1 efficient LoRA epoch; reference: inversion + reconstruction"
                " + 1 efficient full-weight epoch, batch 1",
    }
    row["ratio"] = row["reference_seconds"] / row["seconds"]
    return row


def acceptance(inv: dict, edits: list[dict], finetune: list[dict]) -> dict:
    """The speed-ups against the goals; compiled rows, where measured, are judged on their own."""
    eff_lora = next(r for r in finetune if r["mode"] == "efficient" and r["weights"] == "lora")
    ft_ratio = {f"{r['mode']}_{r['weights']}": r["ratio"] for r in finetune if r["checkpointing"] or
                r["mode"] == "efficient"}
    acc = {
        "finetune_ratio_default (efficient+LoRA)": eff_lora["ratio"],
        "finetune_ratio_min": min(ft_ratio.values()),
        "finetune_goal": FINETUNE_GOAL,
        "inversion_ratio": inv["ratio"],
        "edit_ratio_min": min(r["ratio"] for r in edits if not r.get("compiled")),
        "inversion_edit_goal": INVERSION_EDIT_GOAL,
    }
    acc["finetune_ok"] = acc["finetune_ratio_default (efficient+LoRA)"] >= FINETUNE_GOAL
    acc["inversion_edit_ok"] = min(inv["ratio"], acc["edit_ratio_min"]) >= INVERSION_EDIT_GOAL
    compiled_edits = [r["ratio"] for r in edits if r.get("compiled")]
    if "compiled" in inv and compiled_edits:  # what `dclip batch --compile` runs
        acc["inversion_ratio_compiled"] = inv["compiled"]["ratio"]
        acc["edit_ratio_min_compiled"] = min(compiled_edits)
        acc["inversion_edit_ok_compiled"] = min(inv["compiled"]["ratio"], min(compiled_edits)) >= INVERSION_EDIT_GOAL
    return acc


# --- the table -----------------------------------------------------------------------------------


def fmt_mem(b: int) -> str:
    return f"{b / 2**20:,.0f} MiB"


def _mem_pair(opt: int, ref: int) -> str:
    return f"{fmt_mem(opt)} / {fmt_mem(ref)}"


def table(result: dict) -> str:
    """The text `dclip bench` prints after its run: the rows, the guard, the ablation and the goals."""
    lines = _row_table(result)
    lines.append("")
    lines.extend(_guard_lines(result["precision_guard"]))
    lines.extend(_ablation_lines(result["ablation"]))
    lines.extend(_acceptance_lines(result["acceptance"]))
    if result["device"].startswith("cuda"):
        lines.extend(gpu_goals(result))
    return "\n".join(lines)


def _row_table(result: dict) -> list[str]:
    rows = [("task", "optimised", "reference", "ratio", "peak mem (opt / ref)")]
    inv = result["inversion"]
    rows.append((f"inversion S_for {inv['s_for']} (img/s)", f"{inv['images_per_s']:.2f}",
                 f"{inv['reference']['images_per_s']:.2f}", f"{inv['ratio']:.2f}×",
                 _mem_pair(inv["peak_mem"], inv["reference"]["peak_mem"])))
    if "compiled" in inv:
        c = inv["compiled"]
        rows.append((f"inversion S_for {inv['s_for']} compiled ({c['compile_s']:.0f} s once)",
                     f"{c['images_per_s']:.2f}", f"{inv['reference']['images_per_s']:.2f}", f"{c['ratio']:.2f}×",
                     _mem_pair(c["peak_mem"], inv["reference"]["peak_mem"])))
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
                     _mem_pair(e["peak_mem"], e["reference"]["peak_mem"])))
    for f in result["finetune"]:
        ck = " ckpt" if f["checkpointing"] else ("" if f["mode"] == "efficient" else " no-ckpt")
        label = f"epoch {f['mode']}{ck} {f['weights']} ({f['images']} img, S_gen {f['s_gen']}) s"
        rows.append((label, f"{f['seconds_per_epoch']:.2f}", f"{f['reference']['seconds_per_epoch']:.2f}",
                     f"{f['ratio']:.2f}×", _mem_pair(f["peak_mem"], f["reference"]["peak_mem"])))
    a = result["attribute"]
    rows.append((f"attribute ({a['images']} img, precompute+epoch) s", f"{a['seconds']:.2f}",
                 f"{a['reference_seconds']:.2f}", f"{a['ratio']:.2f}×", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _guard_lines(g: dict) -> list[str]:
    lines = [f"accuracy guard (recon MAE at {g['resolution']}², t0 {g['t0']}, steps {g['steps']}, "
             f"tolerance fp32 + {g['tolerance_recon_mae_over_fp32']}):"]
    for m, r in g["modes"].items():
        if r.get("skipped"):
            lines.append(f"  {m:5s} skipped: {r['why']}")
        elif r.get("supported"):
            lines.append(f"  {m:5s} MAE {r['recon_mae']:.5f}  vs fp32 {r['mae_vs_fp32']:.5f}  {r['seconds']:.2f} s  "
                         f"{'ok' if r['passes'] else 'FAILS'}")
        else:
            lines.append(f"  {m:5s} unsupported: {r['error']}")
    lines.append(f"  default: {g['default']} ({g['why']})")
    return lines


def _ablation_lines(ablation: list[dict]) -> list[str]:
    lines = ["ablation (s per image per UNet forward):"]
    for r in ablation:
        if "error" in r:
            lines.append(f"  {r['variant']}: failed: {r['error']}")
            continue
        kept = {True: " (kept)", False: " (not kept)"}.get(r.get("kept"), "")
        lines.append(f"  {r['variant']:28s} {r['s_per_image_forward']:.4f}  {r['speedup_vs_reference']:.2f}×{kept}")
    return lines


def _acceptance_lines(acc: dict) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = [f"acceptance: fine-tune (efficient+LoRA) {acc['finetune_ratio_default (efficient+LoRA)']:.2f}× "
             f"(goal ≥ {FINETUNE_GOAL:g}: {verdict(acc['finetune_ok'])}); inversion {acc['inversion_ratio']:.2f}×, "
             f"edit min {acc['edit_ratio_min']:.2f}× "
             f"(goal ≥ {INVERSION_EDIT_GOAL:g}: {verdict(acc['inversion_edit_ok'])})"]
    if "inversion_ratio_compiled" in acc:
        lines.append(f"  compiled: inversion {acc['inversion_ratio_compiled']:.2f}×, edit min "
                     f"{acc['edit_ratio_min_compiled']:.2f}× "
                     f"(goal ≥ {INVERSION_EDIT_GOAL:g}: {verdict(acc['inversion_edit_ok_compiled'])})")
    return lines


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


# --- the JSON file -------------------------------------------------------------------------------


def write_json(result: dict, json_path: str) -> Path:
    """Writes the result atomically: a temp file beside it, then a rename."""
    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=_json_default))
    os.replace(tmp, path)
    return path


def _json_default(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)
