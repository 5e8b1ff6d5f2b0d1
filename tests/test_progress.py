"""One progress figure over a whole job: it never goes backwards between phases and ends at 100 %; the
CLI's bars time from their first report and show a fine-tune's loss."""

from __future__ import annotations

import copy
import re
import time

import torch

from dclip_desktop.cli.progress import BarProgress
from dclip_desktop.core.finetune import FinetuneConfig
from dclip_desktop.demo import world
from dclip_desktop.jobs.finetune_job import FinetuneRequest
from dclip_desktop.jobs.progress import OverallProgress, finetune_phases, translate_phases


def _events(req: FinetuneRequest, sampled: bool = True):
    """What run_finetune reports, phase by phase, for the demo's default path (the step totals it
    reports: DDIM steps while sampling, steps of the inversion, optimiser steps)."""
    cfg = req.config
    if sampled:
        yield from (("sampling", s, 40) for s in range(1, 41))
    yield from (("inverting", s, cfg.s_for - 1) for s in range(1, cfg.s_for))
    steps = cfg.epochs * 18
    yield from (("training", s, steps) for s in range(1, steps + 1))
    yield "saving", 0, 1
    yield "saving", 1, 1


def _default_request(**kw) -> FinetuneRequest:
    cfg = FinetuneConfig(t0=301, lambda_l1=1.0, epochs=4)
    return FinetuneRequest("demo-shapes", "red", "blue", "blue", cfg, **kw)


def test_fine_tune_progress_never_goes_back_and_ends_at_100():
    req = _default_request()
    overall = OverallProgress(finetune_phases(req))
    seen = [(phase, overall.update(phase, step, total)) for phase, step, total in _events(req)]
    values = [v for _, v in seen]
    assert all(b >= a for a, b in zip(values, values[1:])), "the bar went backwards"
    assert values[-1] == 1.0 and overall.percent() == 100
    # and it moves in every phase, rather than standing still and jumping
    for name in ("sampling", "inverting", "training"):
        inside = [v for p, v in seen if p == name]
        assert inside[-1] - inside[0] > 0.05, name


def test_skipped_and_repeated_phases_hold_the_bar():
    photos = _default_request(images=[f"{i}.png" for i in range(6)])
    phases = dict(finetune_phases(photos))
    assert phases["sampling"] == 0
    overall = OverallProgress(finetune_phases(photos))
    values = [overall.update(*e) for e in _events(photos, sampled=False)]
    assert values[0] < 0.05 and values[-1] == 1.0  # no sampling: starts near 0, not at its share
    # the demo inverts again to edit after training; a phase it does not list holds the bar too
    demo = OverallProgress([("sampling", 1), ("inverting", 1), ("training", 1), ("generating", 1)])
    run = [("sampling", 40, 40), ("inverting", 39, 39), ("training", 10, 20), ("inverting", 1, 39),
           ("loading", 1, 2), ("training", 20, 20), ("inverting", 1, 39), ("generating", 40, 40)]
    values = [demo.update(*e) for e in run]
    assert values == sorted(values) and values[-1] == 1.0


def test_cli_bar_over_the_whole_job(capsys):
    req = _default_request()
    shown = []
    with BarProgress(phases=finetune_phases(req)) as bar:
        for event in _events(req):
            bar(*event)
            shown.append(bar.bar.n)
    assert shown == sorted(shown) and shown[-1] == 100
    assert "100%" in capsys.readouterr().err


def _rate(bar: BarProgress) -> str:
    return re.search(r"([\d.?]+)step/s", str(bar.bar)).group(1)


def test_a_bar_counts_its_rate_from_its_first_report():
    """The first report comes after the phase's first step: that step is not counted as instant (it made
    "1/40 [107546 step/s]"); the rate is unknown until a second report, then measured from the first."""
    with BarProgress() as bar:
        bar("inverting", 1, 40)
        counted = bar.bar.format_dict
        assert counted["n"] - counted["initial"] == 0 and _rate(bar) == "?"
        time.sleep(0.25)
        bar("inverting", 3, 40)
        assert 0.5 < float(_rate(bar)) < 10  # 2 steps in ≥ 0.25 s, not thousands per second
        bar("generating", 5, 40)  # a new phase's bar starts its count again
        assert bar.bar.format_dict["initial"] == 5 and _rate(bar) == "?"


def test_translate_reports_one_fraction_that_never_goes_back():
    from dclip_desktop.core.lora import inject_lora, lora_factors, lora_modules
    from dclip_desktop.jobs.edit_job import EditRequest
    from dclip_desktop.jobs.session import Session
    from dclip_desktop.jobs.settings import Settings
    from dclip_desktop.jobs.translate_job import TranslateRequest, translate_tensor

    session = Session(Settings(device="cpu", precision="fp32"))
    model = copy.deepcopy(session.base("demo-shapes"))
    inject_lora(model, 2)
    for _, m in lora_modules(model):
        torch.nn.init.normal_(m.lora_B.weight, std=0.02)
    session.library.save_attribute("rnd", lora_factors(model), "lora", {"base_id": "demo-shapes", "t0": 300})
    req = TranslateRequest(EditRequest([("rnd", 1.0)], s_for=4, s_gen=5), seeds=[0, 1], rounds=2, project_steps=3)
    overall = OverallProgress(translate_phases(req))
    seen = []
    x, _, _ = world.make_scenes([0])
    translate_tensor(session, req, x, progress=lambda p, s, t, preview=None: seen.append((p, overall.update(p, s, t))))
    values = [v for _, v in seen]
    assert values == sorted(values) and values[-1] == 1.0
    assert list(dict.fromkeys(p for p, _ in seen)) == ["projecting", "inverting", "generating"]
    for name in ("projecting", "inverting", "generating"):  # each phase moves the one bar
        inside = [v for p, v in seen if p == name]
        assert inside[-1] - inside[0] > 0.1, name


def test_the_fine_tune_bar_shows_the_loss(capsys):
    with BarProgress(phases=[("training", 1), ("saving", 0)]) as bar:
        bar("training", 1, 4)
        bar.on_step(1, 4, {"total": 0.51234, "clip": 0.4})
        bar("training", 2, 4)
        assert "loss 0.5123" in str(bar.bar)
        bar.on_step(2, 4, {"total": 0.25})
        bar("saving", 0, 1)
        assert "loss 0.2500" in str(bar.bar)


def test_dclip_finetune_prints_its_loss_and_saves_as_a_real_phase(tmp_path, capsys):
    from dclip_desktop.cli.main import main

    imgs = world.save_scenes(tmp_path / "photos", 2, color="red")
    assert main(["finetune", "--src", "red", "--tgt", "blue", "--name", "blue", "--images", str(imgs), "--epochs",
                 "1", "--s-for", "4", "--s-gen", "3", "--rank", "2"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"training \d+/\d+: .*, loss \d+\.\d{4}", err)
    assert "saving 1/1" in err and "saved 1/1" not in err
