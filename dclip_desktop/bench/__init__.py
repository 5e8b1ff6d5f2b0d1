"""`dclip bench`: speed of the engine against a faithful reference loop, with an accuracy guard."""

from __future__ import annotations


def run_bench(*args, **kwargs):
    """See runner.run_bench; imported lazily so `import dclip_desktop.bench` stays cheap."""
    from .runner import run_bench as _run

    return _run(*args, **kwargs)


__all__ = ["run_bench"]
