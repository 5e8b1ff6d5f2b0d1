"""What a batch is asked to do (BatchRequest) and what it did (BatchSummary). Kept apart from the engine so
the bookkeeping (`batch_manifest.py`) reads them without importing it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .edit_job import EditRequest
from .errors import JobError


class DiskFullError(JobError):
    """The output disk filled up; `summary` says what was finished (and kept)."""

    def __init__(self, message: str, summary: BatchSummary) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class BatchRequest:
    input_dir: str | os.PathLike
    output_dir: str | os.PathLike
    edit: EditRequest
    recursive: bool = False
    fit: str = "center-crop"
    paste_back: bool = False
    resume: bool = False
    batch_size: int = 8
    seed: int = 0
    force: bool = False
    faces: str = "auto"  # face_edit.FACE_MODES: align each face, edit it and paste it back into the photo


@dataclass
class BatchSummary:
    done: int = 0  # edited by this run
    skipped: int = 0  # finished earlier (resume)
    failed: int = 0
    errors: list = field(default_factory=list)  # (relpath, reason)
    images_per_s: float = 0.0
    seconds: float = 0.0
    total: int = 0
    report_json: Optional[Path] = None
    report_csv: Optional[Path] = None
    manifest: Optional[Path] = None
    stopped: Optional[str] = None  # why the batch stopped early ("cancelled", "disk full: …")
