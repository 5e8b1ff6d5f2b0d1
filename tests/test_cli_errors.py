"""How `dclip` reports a failure, decided by the error's kind (jobs/errors.classify), never by its text:
the user's to fix → one line and exit 2; cancelled → 130; a bug → one line naming the log that holds the
traceback and exit 1, or the traceback itself with --debug."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dclip_desktop.cli import edit_cmds
from dclip_desktop.cli.main import main
from dclip_desktop.core.cancel import Cancelled
from dclip_desktop.errors import BadInput, MissingWeights


def _failing(monkeypatch, exc: BaseException) -> None:
    """`dclip info` whose reading step raises `exc` (the handler under test is main's, not info's)."""
    def read_metadata(path):
        raise exc

    monkeypatch.setattr(edit_cmds, "read_metadata", read_metadata)


@pytest.mark.parametrize("exc, code, words", [
    (BadInput("t0 must be in 1..999"), 2, "error: t0 must be in 1..999"),
    (MissingWeights("missing weights file 'x.bin'"), 2, "error: missing weights file 'x.bin'"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), 2, "error: out of memory: caches were freed"),
    (OSError(28, "No space left on device", "/out/x.png"), 2, "/out/x.png: the disk is full"),
    (Cancelled("cancelled by user"), 130, "cancelled"),
])
def test_the_users_problems_are_one_line(monkeypatch, capsys, exc, code, words):
    _failing(monkeypatch, exc)
    assert main(["info", "x.png"]) == code
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("exc", [ValueError("list.index(x): x not in list"), TypeError("unhashable type: 'list'"),
                                 KeyError("schedule"), RuntimeError("expected scalar type Float")])
def test_a_bug_says_so_and_keeps_its_traceback_in_the_log(monkeypatch, capsys, exc):
    _failing(monkeypatch, exc)
    assert main(["info", "x.png"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"internal error ({type(exc).__name__}" in err and "This is a bug" in err
    log = Path(os.environ["DCLIP_LOG_DIR"]) / "dclip-errors.log"
    assert str(log) in err
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and type(exc).__name__ in text and "dclip info x.png" in text


def test_debug_shows_the_traceback_itself(monkeypatch):
    _failing(monkeypatch, TypeError("unhashable type: 'list'"))
    with pytest.raises(TypeError, match="unhashable"):
        main(["--debug", "info", "x.png"])
    assert not (Path(os.environ["DCLIP_LOG_DIR"]) / "dclip-errors.log").exists()


def test_a_reader_that_stops_early_is_not_an_error(tmp_path):
    """`dclip info x.png | head -1`: the pipe closes before dclip is done writing; like any Unix tool it
    stops quietly (128 + SIGPIPE), with no 'internal error' and nothing in the log."""
    import signal
    import subprocess
    import sys

    from PIL import Image

    from dclip_desktop.jobs.images import save_png

    png = save_png(Image.new("RGB", (8, 8)), tmp_path / "x.png", {"app_version": "0.1.0", "operation": "edit"})
    proc = subprocess.Popen([sys.executable, "-m", "dclip_desktop.cli.main", "info", str(png)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 128 + signal.SIGPIPE and err == ""
    assert not (Path(os.environ["DCLIP_LOG_DIR"]) / "dclip-errors.log").exists()
