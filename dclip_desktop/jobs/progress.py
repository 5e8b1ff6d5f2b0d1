"""Job progress: a phase name on top of the core's (step, total, preview) callback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch

from ..core.cancel import Progress

# progress(phase, step, total, preview)
JobProgress = Callable[[str, int, int, Optional[torch.Tensor]], None]


def phase(progress: Optional[JobProgress], name: str) -> Optional[Progress]:
    if progress is None:
        return None
    return lambda step, total, preview=None: progress(name, step, total, preview)
