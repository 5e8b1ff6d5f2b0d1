"""How the bench times a block: device syncs at both ends only, peak memory while it runs, and the
precision it runs in."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _rss() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # Linux without psutil
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """CUDA: max allocated during the block. Elsewhere: peak process RSS, sampled every 5 ms."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "process_rss"

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._stop = threading.Event()
            self.peak = _rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss())


def timed(fn: Callable, device: torch.device) -> tuple[float, int, object]:
    """(seconds, peak bytes, result) of fn(), with device syncs at both ends only."""
    sync(device)
    with PeakMemory(device) as pm:
        t = time.perf_counter()
        out = fn()
        sync(device)
        dt = time.perf_counter() - t
    return dt, pm.peak, out


@contextlib.contextmanager
def precision_context(mode: str, device: torch.device):
    """fp32 on CUDA means true fp32 (TF32 off); tf32 turns TF32 on for matmuls and convolutions."""
    if device.type != "cuda":
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        on = mode != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
