"""One GPU worker thread: a worker QObject living on a QThread runs the Qt-free jobs; a GUI-thread
controller re-emits its signals (widgets and tests connect to the controller only).

A job is a callable `fn(session, ctx)` executed on the worker thread. `ctx` carries the cancel token
and the progress/loss/epoch/training-image callbacks that the engine expects; images cross threads as
`QImage(...).copy()` (never QPixmap) and previews are throttled (every `preview_every` steps and at
most 10 per second). A job that calls `ctx.track(phases)` also reports one fraction over all its
phases (jobs.progress.OverallProgress), for a bar that never goes back. A model a job's loads download
reports its bytes as a progress phase "downloading <model id>" (the session's `downloads` hook, which
the CLI fills with byte bars); step and total travel as 64-bit numbers, so a file over 2 GiB is counted right.
Cancel is cooperative (the engine polls the token between steps): never QThread.terminate().
A failure reaches the GUI with its kind (errors.Kind, decided by the exception's type in
jobs.errors.classify), so widgets choose how to show it by kind, never by reading its text.
"""

from __future__ import annotations

import gc
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

from ..errors import Kind

PREVIEW_MIN_INTERVAL_S = 0.1  # ≤ 10 previews per second
PROGRESS_MIN_INTERVAL_S = 0.05
DOWNLOADING = "downloading "  # the phase name's start for a download's bytes (step, total in bytes)


def _make_token(event: threading.Event):
    """A core CancelToken that shares the controller's Event (so Cancel works before the job starts)."""
    from ..core.cancel import Cancelled, CancelToken

    class SharedToken(CancelToken):
        def __init__(self) -> None:
            super().__init__()
            self._shared = event

        def cancel(self) -> None:
            self._shared.set()

        @property
        def cancelled(self) -> bool:
            return self._shared.is_set()

        def check(self) -> None:
            if self._shared.is_set():
                raise Cancelled("cancelled by user")

    return SharedToken()


class JobContext:
    """What a job function gets besides the session; lives on the worker thread."""

    def __init__(self, worker: Worker, job_id: int, cancel, preview_every: int) -> None:
        self._worker = worker
        self.job_id = job_id
        self.cancel = cancel
        self.preview_every = max(1, int(preview_every))
        self._last_preview = 0.0
        self._last_progress = 0.0
        self._overall = None

    def track(self, phases) -> None:
        """Report one fraction over these (phase, weight) pairs along with each phase's steps."""
        from ..jobs.progress import OverallProgress

        self._overall = OverallProgress(phases)

    def progress(self, phase: str, step: int, total: int, preview=None) -> None:
        now = time.monotonic()
        last = step >= total
        # every event moves the fraction (it is cheap); only the throttled ones cross threads
        fraction = self._overall.update(phase, step, total) if self._overall is not None else -1.0
        if last or now - self._last_progress >= PROGRESS_MIN_INTERVAL_S:
            self._last_progress = now
            self._worker.progress.emit(self.job_id, phase, int(step), int(total), float(fraction))
        if preview is not None and (last or step % self.preview_every == 0):
            if last or now - self._last_preview >= PREVIEW_MIN_INTERVAL_S:
                self._last_preview = now
                from .imaging import tensor_to_qimage

                self._worker.preview.emit(self.job_id, tensor_to_qimage(preview))

    def download(self, model_id: str):
        """For `Session.downloads`: the (done, total) byte callback of `model_id`'s files, as progress."""
        return lambda done, total: self.progress(f"{DOWNLOADING}{model_id}", done, total)

    def on_step(self, step: int, total: int, losses: dict) -> None:
        row = {k: float(v) for k, v in losses.items() if isinstance(v, (int, float))}
        self._worker.losses.emit(self.job_id, int(step), int(total), row)

    def on_epoch(self, epoch: int, preview) -> None:
        from .imaging import tensor_to_qimage

        self._worker.epoch.emit(self.job_id, int(epoch), tensor_to_qimage(preview))

    def on_images(self, chosen) -> None:
        """A fine-tune's training images (jobs.finetune_job.TrainingImages): a grid and the summary line."""
        from .imaging import tensor_grid_qimage

        self._worker.training_images.emit(self.job_id, tensor_grid_qimage(chosen.images), chosen.summary())

    def event(self, name: str, payload: Any = None) -> None:
        """Job-specific notifications (e.g. the batch job's per-file status)."""
        self._worker.message.emit(self.job_id, name, payload)


def describe(exc: BaseException) -> tuple[Kind, str, str]:
    """(kind, one line for the user, details) for a failure, by its type (jobs.errors.classify): a user
    error's own line and no details; a bug's type and text, with its traceback as the details."""
    from ..jobs.errors import classify

    failure = classify(exc)
    if failure.kind is Kind.BUG:
        return failure.kind, f"Unexpected error ({type(exc).__name__}): {exc}", "".join(traceback.format_exception(exc))
    return failure.kind, failure.message, ""


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def memory_text() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            used = torch.cuda.memory_allocated() / 2**30
            total = torch.cuda.get_device_properties(0).total_memory / 2**30
            return f"GPU {used:.1f}/{total:.0f} GiB"
    except Exception:  # noqa: BLE001
        pass
    return "GPU memory: n/a"


class Worker(QObject):
    """Lives on the worker thread. Holds the engine Session so models load once."""

    ready = Signal(dict)  # device, precision, memory
    progress = Signal(int, str, "qlonglong", "qlonglong", float)  # job id, phase, step, total, fraction (-1)
    preview = Signal(int, QImage)
    training_images = Signal(int, QImage, str)
    losses = Signal(int, int, int, dict)
    epoch = Signal(int, int, QImage)
    message = Signal(int, str, object)
    finished = Signal(int, object)
    failed = Signal(int, str, str, str)  # job id, failure kind (errors.Kind value), message, details
    cancelled = Signal(int)
    memory = Signal(str)

    def __init__(self, settings=None) -> None:
        super().__init__()
        self._settings = settings
        self.session = None
        self.forget_attributes = False

    def _session(self):
        if self.session is None:
            from ..jobs.session import Session

            self.session = Session(self._settings)
            self.ready.emit({"device": str(self.session.device), "precision": self.session.precision,
                             "memory": memory_text()})
        return self.session

    @Slot(object)
    def set_settings(self, settings) -> None:
        self._settings = settings
        self.session = None
        _free_memory()

    @Slot(int, object, object, int)
    def run(self, job_id: int, fn: Callable, event: threading.Event, preview_every: int) -> None:
        try:
            token = _make_token(event)
            token.check()
            session = self._session()
            if self.forget_attributes:
                self.forget_attributes = False
                session.forget_attributes()
            ctx = JobContext(self, job_id, token, preview_every or session.settings.preview_every)
            session.downloads = ctx.download
            try:
                result = fn(session, ctx)
            finally:
                session.downloads = None  # the next job reports to its own context
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the GUI, never kill the thread
            self._fail(job_id, exc, event)
        else:
            self.finished.emit(job_id, result)
        finally:
            self.memory.emit(memory_text())

    def _fail(self, job_id: int, exc: BaseException, event: threading.Event) -> None:
        kind, message, details = describe(exc)
        if kind is Kind.CANCELLED or event.is_set():
            self.cancelled.emit(job_id)
            return
        if kind is Kind.OUT_OF_MEMORY:
            _free_memory()  # so that the next job can run
        self.failed.emit(job_id, kind.value, message, details)


@dataclass
class _Job:
    id: int
    kind: str
    event: threading.Event
    started: float
    phase: str = ""
    phase_started: float = 0.0
    fraction: float = -1.0  # of the whole job, when it tracks its phases


class JobController(QObject):
    """GUI-thread face of the worker: submit one job at a time, cancel it, get its signals."""

    ready = Signal(dict)
    busy_changed = Signal(bool)
    started = Signal(str)  # kind
    progress = Signal(str, "qlonglong", "qlonglong", float)  # phase, step, total, eta seconds (-1 unknown)
    overall = Signal(float)  # fraction 0..1 of the whole job, never decreasing (tracked jobs only)
    preview = Signal(QImage)
    training_images = Signal(QImage, str)  # grid of a fine-tune's training images, summary line
    losses = Signal(int, int, dict)
    epoch_preview = Signal(int, QImage)
    message = Signal(str, object)
    finished = Signal(str, object)  # kind, result
    # job kind, message, details (a bug's traceback, else ""), failure kind (errors.Kind value): the failure's
    # kind comes last so that a listener showing only the message takes (job, message, *_)
    failed = Signal(str, str, str, str)
    cancelled = Signal(str)
    memory = Signal(str)

    _submit = Signal(int, object, object, int)
    _settings = Signal(object)

    def __init__(self, settings=None, parent: Optional[QObject] = None, session=None) -> None:
        super().__init__(parent)
        self.preview_every = 0  # 0: the session settings' value
        self.info: dict = {}
        self._job: Optional[_Job] = None
        self._next_id = 1
        self._thread = QThread()
        self._thread.setObjectName("dclip-worker")
        self._worker = Worker(settings)
        self._worker.session = session  # normally None: the worker builds it on its own thread
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run)
        self._settings.connect(self._worker.set_settings)
        w = self._worker
        w.ready.connect(self._on_ready)
        w.progress.connect(self._on_progress)
        w.preview.connect(self._on_preview)
        w.training_images.connect(self._on_training_images)
        w.losses.connect(self._on_losses)
        w.epoch.connect(self._on_epoch)
        w.message.connect(self._on_message)
        w.finished.connect(self._on_finished)
        w.failed.connect(self._on_failed)
        w.cancelled.connect(self._on_cancelled)
        w.memory.connect(self._on_memory)
        self._thread.start()

    # --- public API ---------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._job is not None

    @property
    def kind(self) -> str:
        return self._job.kind if self._job else ""

    @property
    def fraction(self) -> float:
        """The running job's overall fraction (0..1), or -1 when it does not track its phases."""
        return self._job.fraction if self._job else -1.0

    def submit(self, kind: str, fn: Callable) -> bool:
        """Queue `fn(session, ctx)` on the worker. False (and nothing queued) while another job runs."""
        if self._job is not None:
            return False
        event = threading.Event()
        now = time.monotonic()
        self._job = _Job(self._next_id, kind, event, now, phase_started=now)
        self._next_id += 1
        self.busy_changed.emit(True)
        self.started.emit(kind)
        self._submit.emit(self._job.id, fn, event, int(self.preview_every))
        return True

    def warm_up(self) -> None:
        """Create the session (imports torch, picks the device) off the GUI thread."""
        self.submit("init", lambda session, ctx: None)

    def cancel(self) -> None:
        if self._job is not None:
            self._job.event.set()

    def apply_settings(self, settings) -> None:
        """New device/precision/dirs: the worker drops its session and builds a new one on the next job."""
        self._settings.emit(settings)

    def library_changed(self) -> None:
        """Materialised attributes are stale after a rename/delete/import: drop them before the next job."""
        self._worker.forget_attributes = True

    def shutdown(self, timeout_ms: int = 10000) -> None:
        self.cancel()
        self._thread.quit()
        self._thread.wait(timeout_ms)

    # --- worker signals (GUI thread) ----------------------------------------------------------
    def _is_current(self, job_id: int) -> bool:
        return self._job is not None and self._job.id == job_id

    # Bound methods (not lambdas): a lambda slot would run on the worker thread.
    @Slot(int, QImage)
    def _on_preview(self, job_id: int, img: QImage) -> None:
        if self._is_current(job_id):
            self.preview.emit(img)

    @Slot(int, QImage, str)
    def _on_training_images(self, job_id: int, img: QImage, summary: str) -> None:
        if self._is_current(job_id):
            self.training_images.emit(img, summary)

    @Slot(int, int, int, dict)
    def _on_losses(self, job_id: int, step: int, total: int, row: dict) -> None:
        if self._is_current(job_id):
            self.losses.emit(step, total, row)

    @Slot(int, int, QImage)
    def _on_epoch(self, job_id: int, epoch: int, img: QImage) -> None:
        if self._is_current(job_id):
            self.epoch_preview.emit(epoch, img)

    @Slot(int, str, object)
    def _on_message(self, job_id: int, name: str, payload: object) -> None:
        if self._is_current(job_id):
            self.message.emit(name, payload)

    @Slot(str)
    def _on_memory(self, text: str) -> None:
        self.memory.emit(text)

    @Slot(dict)
    def _on_ready(self, info: dict) -> None:
        self.info = dict(info)
        self.ready.emit(info)

    @Slot(int, str, "qlonglong", "qlonglong", float)
    def _on_progress(self, job_id: int, phase: str, step: int, total: int, fraction: float) -> None:
        job = self._job
        if job is None or job.id != job_id:
            return
        now = time.monotonic()
        if phase != job.phase:
            job.phase, job.phase_started = phase, now
        elapsed = now - job.phase_started
        eta = elapsed / step * (total - step) if step > 0 and total > 0 else -1.0
        job.fraction = fraction  # set first: progress's listeners read it
        self.progress.emit(phase, step, total, eta)
        if fraction >= 0:
            self.overall.emit(fraction)

    def _end(self, job_id: int) -> Optional[str]:
        if self._job is None or self._job.id != job_id:
            return None
        kind = self._job.kind
        self._job = None
        self.busy_changed.emit(False)
        return kind

    @Slot(int, object)
    def _on_finished(self, job_id: int, result: object) -> None:
        kind = self._end(job_id)
        if kind is not None:
            self.finished.emit(kind, result)

    @Slot(int, str, str, str)
    def _on_failed(self, job_id: int, failure: str, message: str, details: str) -> None:
        kind = self._end(job_id)
        if kind is not None:
            self.failed.emit(kind, message, details, failure)

    @Slot(int)
    def _on_cancelled(self, job_id: int) -> None:
        kind = self._end(job_id)
        if kind is not None:
            self.cancelled.emit(kind)
