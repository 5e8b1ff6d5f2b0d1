"""tqdm bars for job progress: one bar per phase, closed when the phase changes."""

from __future__ import annotations

import sys

from tqdm import tqdm


class BarProgress:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar = None
        self.phase = None

    def __call__(self, phase: str, step: int, total: int, preview=None) -> None:
        if self.quiet:
            return
        if phase != self.phase or self.bar is None or self.bar.total != total:
            self.close()
            self.phase = phase
            self.bar = tqdm(total=total, desc=phase, unit="step", leave=False, file=sys.stderr)
        self.bar.n = step
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
