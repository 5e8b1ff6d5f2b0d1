"""tqdm bars for job progress and for the downloads a command starts.

Without phase weights: one bar per phase, closed when the phase changes. With them (e.g.
`jobs.progress.finetune_phases(req)`): one bar over the whole job, in percent, that never goes back.

A bar opens on a phase's first report, which comes after that phase's first step. Its rate counts
from there (tqdm's `initial`): the steps before it took time the bar never saw, and counting them as
instant made the first reading "1/40 [107546 step/s]" and the ETA far too short.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Optional

from tqdm import tqdm

from ..jobs.progress import OverallProgress


class BarProgress:
    def __init__(self, quiet: bool = False, phases: Optional[Sequence[tuple[str, float]]] = None) -> None:
        self.quiet = quiet
        self.bar = None
        self.phase = None
        self.overall = OverallProgress(phases) if phases else None
        self.postfix = ""

    def __call__(self, phase: str, step: int, total: int, preview=None) -> None:
        if self.quiet:
            return
        if self.overall is not None:
            self._whole_job(phase, step, total)
            return
        if phase != self.phase or self.bar is None or self.bar.total != total:
            self.close()
            self.phase = phase
            self.bar = self._open(step, total=total, desc=phase, unit="step")
        self.bar.n = step
        self.bar.refresh()

    def _open(self, first, **kw) -> tqdm:
        bar = tqdm(initial=first, leave=False, file=sys.stderr, **kw)
        if self.postfix:
            bar.set_postfix_str(self.postfix, refresh=False)
        return bar

    def _whole_job(self, phase: str, step: int, total: int) -> None:
        n = round(100 * self.overall.update(phase, step, total), 1)
        if self.bar is None:
            self.bar = self._open(n, total=100, unit="%",
                                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
        self.phase = phase
        self.bar.set_description_str(f"{phase} {step}/{total}", refresh=False)
        self.bar.n = n
        self.bar.refresh()

    def on_step(self, step: int, total: int, losses: dict) -> None:
        """A fine-tune's `on_step` hook: the latest loss, shown after the bar."""
        if self.quiet or "total" not in losses:
            return
        self.postfix = f"loss {float(losses['total']):.4f}"
        if self.bar is not None:
            self.bar.set_postfix_str(self.postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BytesBar:
    """A byte progress bar opened on the first report, so an offline refusal prints nothing else. It
    closes when a file is complete; the next file's first report opens a new one."""

    def __init__(self, desc: str) -> None:
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(desc=self.desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                            file=sys.stderr, initial=done)
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()
        if total and done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def download_bars(quiet: bool = False):
    """For `Session.downloads`: a byte bar for each model a job's loads fetch (none when quiet)."""
    return None if quiet else (lambda model_id: BytesBar(f"downloading {model_id}"))
