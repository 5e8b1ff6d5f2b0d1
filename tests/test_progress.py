"""One progress figure over a whole job: it never goes backwards between phases and ends at 100 %."""

from __future__ import annotations

from dclip_desktop.cli.progress import BarProgress
from dclip_desktop.core.finetune import FinetuneConfig
from dclip_desktop.jobs.finetune_job import FinetuneRequest
from dclip_desktop.jobs.progress import OverallProgress, finetune_phases


def _events(req: FinetuneRequest, sampled: bool = True):
    """What run_finetune reports, phase by phase, for the demo's default path (the step totals it
    reports: DDIM steps while sampling, steps of the inversion, optimiser steps)."""
    cfg = req.config
    if sampled:
        yield from (("sampling", s, 40) for s in range(1, 41))
    yield from (("inverting", s, cfg.s_for - 1) for s in range(1, cfg.s_for))
    steps = cfg.epochs * 18
    yield from (("training", s, steps) for s in range(1, steps + 1))
    yield "saved", 1, 1


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
