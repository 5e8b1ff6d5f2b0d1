"""tqdm bars for job progress.

Without phase weights: one bar per phase, closed when the phase changes. With them (e.g.
`jobs.progress.finetune_phases(req)`): one bar over the whole job, in percent, that never goes back.
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

    def __call__(self, phase: str, step: int, total: int, preview=None) -> None:
        if self.quiet:
            return
        if self.overall is not None:
            self._whole_job(phase, step, total)
            return
        if phase != self.phase or self.bar is None or self.bar.total != total:
            self.close()
            self.phase = phase
            self.bar = tqdm(total=total, desc=phase, unit="step", leave=False, file=sys.stderr)
        self.bar.n = step
        self.bar.refresh()

    def _whole_job(self, phase: str, step: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=100, unit="%", leave=False, file=sys.stderr,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        self.phase = phase
        self.bar.set_description_str(f"{phase} {step}/{total}", refresh=False)
        self.bar.n = round(100 * self.overall.update(phase, step, total), 1)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
