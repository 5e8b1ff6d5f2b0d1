"""A download that a GUI job starts reports its bytes through the worker's progress signal, as the
CLI shows a byte bar (issue 19): the worker fills the session's `downloads` hook for each job.

The weights come from the loopback fake hub of tests/test_download.py (no network)."""

from __future__ import annotations

import torch

from tests.test_download import hub  # noqa: F401 - a fixture served_base needs
from tests.test_job_prefetch import BASE, served_base  # noqa: F401 - a fixture

LONG = 60_000


def _controller():
    from dclip_desktop.gui.worker import JobController
    from dclip_desktop.jobs.session import Session
    from dclip_desktop.jobs.settings import Settings

    session = Session(Settings(device="cpu", precision="fp32"))  # online: the fake hub serves the base
    return JobController(session=session), session


def test_a_job_that_downloads_a_base_reports_its_bytes(qtbot, served_base):  # noqa: F811
    from dclip_desktop.jobs.edit_job import reconstruct_tensor

    controller, session = _controller()
    seen = []
    controller.progress.connect(lambda phase, step, total, eta: seen.append((phase, step, total)))
    try:
        with qtbot.waitSignal(controller.finished, timeout=LONG):
            assert controller.submit("reconstruct", lambda s, ctx: reconstruct_tensor(
                s, BASE, torch.zeros(1, 3, 16, 16), t0=100, s_for=2, s_gen=2, progress=ctx.progress))
    finally:
        controller.shutdown()
    size = len(served_base["diffusion_pytorch_model.safetensors"])
    weights = [(step, total) for phase, step, total in seen if phase == f"downloading {BASE}" and total == size]
    assert weights and weights[-1] == (size, size)  # the weights file's bytes, to the end
    assert [d for d, _ in weights] == sorted(d for d, _ in weights)
    assert session.downloads is None  # the hook belongs to the job that ran: none is left behind


def test_byte_counts_over_2_gib_cross_the_thread_intact(qtbot):
    controller, _ = _controller()
    seen = []
    controller.progress.connect(lambda phase, step, total, eta: seen.append((phase, step, total)))
    try:
        with qtbot.waitSignal(controller.finished, timeout=LONG):
            controller.submit("download", lambda s, ctx: ctx.download("imagenet-512")(5_000_000_000, 5_000_000_000))
    finally:
        controller.shutdown()
    assert seen == [("downloading imagenet-512", 5_000_000_000, 5_000_000_000)]


def test_the_status_line_shows_a_download_in_megabytes(qtbot):
    from PySide6.QtWidgets import QProgressBar

    from dclip_desktop.gui.ui.prompt_panel import show_progress, step_text

    assert step_text("downloading celebahq", 12_300_000, 455_000_000) == "downloading celebahq 12.3/455 MB"
    assert step_text("inverting", 3, 40) == "inverting 3/40"
    bar = QProgressBar()
    qtbot.addWidget(bar)
    show_progress(bar, -1.0, 3_000_000_000, 6_000_000_000)  # past a QProgressBar's int range
    assert bar.value() / bar.maximum() == 0.5
