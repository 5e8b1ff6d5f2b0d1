"""`dclip bench --quick --config demo` runs and writes valid JSON (a smoke check; benches measure speed)."""

import json

from dclip_desktop.cli.main import main


def test_bench_quick_demo_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--config", "demo", "--device", "cpu", "--threads", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["schema"] == "dclip-bench/1" and data["config"] == "demo" and data["quick"] is True
    for key in ("inversion", "precompute", "edits", "finetune", "attribute", "precision_guard", "ablation",
                "acceptance", "settings"):
        assert key in data, key
    assert data["inversion"]["images_per_s"] > 0 and data["inversion"]["ratio"] > 0
    assert {(e["s_for"], e["s_gen"]) for e in data["edits"]} == {(200, 40), (40, 40)}
    combos = {(f["mode"], f["weights"]) for f in data["finetune"]}
    assert combos >= {("efficient", "lora"), ("efficient", "full"), ("full_chain", "lora"), ("full_chain", "full")}
    for f in data["finetune"]:
        assert f["seconds_per_epoch"] > 0 and f["reference"]["seconds_per_epoch"] > 0 and f["peak_mem"] > 0
    guard = data["precision_guard"]
    assert guard["modes"]["fp32"]["mae_vs_fp32"] == 0.0
    assert guard["default"] in guard["modes"] and guard["tolerance_recon_mae_over_fp32"] > 0


def test_plan_fields_are_keyword_only():
    import pytest
    import torch

    from dclip_desktop.bench.plan import Plan, make_plan

    plan = make_plan("demo", True, torch.device("cpu"))
    with pytest.raises(TypeError):
        Plan(32, 2, 2, 3, [], 2, 2, 2, 2, 2, 1, 1, 3, 32, 1, 1)  # positional: refused
    assert plan.inv_steps == 3 and plan.warmup is False


def test_bad_device_or_precision_is_one_line(capsys):
    for extra in (["--device", "tpu"], ["--precision", "fp8"], ["--device", "cpu", "--precision", "tf32"],
                  ["--device", "cpu", "--precision", "fp16"]):  # zoo.device's rule: no fp16 on a CPU
        assert main(["bench", "--quick", *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("dclip bench: error: ") and "\n" not in err, err


def test_guard_picks_only_what_the_app_runs():
    """fp16 may pass the guard on a CPU (torch emulates it) but the app never runs it there."""
    import torch

    from dclip_desktop.bench.measure import Bench
    from dclip_desktop.bench.plan import make_plan

    cpu = torch.device("cpu")
    bench = Bench(make_plan("demo", True, cpu), "demo", cpu)
    measured = {m: {"supported": True, "recon_mae": 0.08, "mae_vs_fp32": 0.0, "seconds": s, "finite": True}
                for m, s in (("fp32", 4.0), ("bf16", 2.0), ("fp16", 0.5))}
    assert bench._choose_precision(measured, list(measured))[0] == "bf16"
    assert measured["fp16"]["passes"] and bench.dtype is torch.bfloat16
