"""Live γ: once an edit has been applied to the image, dragging the degree slider previews that edit
at each γ, and releasing it runs the full generation. Neither inverts again: the inverted latent is
in the latent cache (same image, t0 and S_for), so only generation runs.

What a preview generates (`preview_steps`): on bases under 128² (the demo's 32²) the full generation,
S_gen as set, so every step of the drag shows the real result; from 128² up, a PREVIEW_STEPS-step
DDIM generation from the same latent (the x̂0 of its last step), so a preview costs a few UNet calls
whatever S_gen is, and the release brings the full S_gen one.

Throttle: a request starts a THROTTLE_MS single-shot timer unless it runs already; when it fires, and
no job runs, one job is submitted for the γ the model holds then. Requests made meanwhile coalesce into
one (the latest kind wins, the latest γ is what it reads), so at most one preview is in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

LARGE = 128  # bases from this size up preview with a few steps
PREVIEW_STEPS = 5
THROTTLE_MS = 100
PREVIEW, FULL = "preview", "full"
LIVE_KIND = "live"  # the controller's job kind of a preview


def preview_steps(resolution: int, s_gen: int) -> int:
    """S_gen of a live preview on a base of `resolution`²: the edit's own under LARGE, else a few."""
    return s_gen if resolution < LARGE else min(s_gen, PREVIEW_STEPS)


class LiveDegree(QObject):
    """Coalesces the slider's requests into jobs. `make_job(kind)` gives (job kind, fn) for PREVIEW or
    FULL at the current γ, or None when nothing has been applied to preview from."""

    previewed = Signal(float, QImage)  # γ, the preview

    def __init__(self, controller, make_job: Callable[[str], Optional[tuple[str, Callable]]],
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.controller, self._make_job = controller, make_job
        self.pending: Optional[str] = None
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(THROTTLE_MS)
        self.timer.timeout.connect(self._flush)
        controller.finished.connect(self._on_finished)
        controller.busy_changed.connect(self._on_busy)

    def request(self, kind: str) -> None:
        self.pending = kind
        if not self.timer.isActive():
            self.timer.start()

    def _flush(self) -> None:
        if self.pending is None or self.controller.busy:
            return  # the running job's end starts the timer again
        kind, self.pending = self.pending, None
        job = self._make_job(kind)
        if job is not None:
            self.controller.submit(*job)

    def _on_finished(self, kind: str, result) -> None:
        if kind == LIVE_KIND:
            self.previewed.emit(float(result["degree"]), result["image"])

    def _on_busy(self, busy: bool) -> None:
        """A job ended (finished, failed or cancelled): what was asked meanwhile goes next, from the timer
        (never from inside the controller's own signal)."""
        if not busy and self.pending is not None and not self.timer.isActive():
            self.timer.start()


__all__ = ["LiveDegree", "preview_steps", "PREVIEW_STEPS", "LARGE"]
