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
