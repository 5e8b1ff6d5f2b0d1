"""Cooperative cancellation and progress reporting shared by every long loop.

Loops poll a CancelToken between diffusion/optimiser steps (never kill a thread mid-step), so a
cancel always leaves models and files in a consistent state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Optional

import torch

from ..errors import Kind, UserError

# progress(step, total, preview) — preview is a predicted-x0 batch in [-1, 1] or None.
Progress = Callable[[int, int, Optional[torch.Tensor]], None]


class Cancelled(UserError):
    """Raised inside a loop when its CancelToken is set."""

    kind = Kind.CANCELLED


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by user")


def check(cancel: Optional[CancelToken]) -> None:
    if cancel is not None:
        cancel.check()


def report(progress: Optional[Progress], step: int, total: int, preview: Optional[torch.Tensor] = None) -> None:
    if progress is not None:
        progress(step, total, preview)
