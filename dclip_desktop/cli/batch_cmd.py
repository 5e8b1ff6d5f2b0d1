"""`dclip batch IN_DIR OUT_DIR --attr NAME[:W]...`: edit a folder; exit 0 all ok, 1 some files failed or the
disk filled up, 2 user error, 130 cancelled (Ctrl-C stops between diffusion steps, finished files are kept)."""

from __future__ import annotations

import signal
import sys
import time
from typing import Optional

from ..jobs.face_edit import FACE_MODES
from ..jobs.images import FIT_POLICIES

EPILOG = """\
Policies: inputs are never modified; outputs are PNGs named <stem>.png in OUT_DIR (subfolders mirrored),
written atomically; a taken name gets '<stem> (2).png', never an overwrite. Every output carries its
settings (see `dclip info`). Bad files are listed with a reason in OUT_DIR/batch-report.{json,csv} and the
batch goes on. --resume skips finished files (manifest OUT_DIR/.dclip-batch.json) and retries failed ones.
--paste-back resizes the edit onto the fitted region of the original photo, keeping its size.
--faces (auto on face bases): each face is aligned, edited and pasted back into the photo, which keeps
its size; a photo with no face is a failed file."""


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class _Printer:
    """One status line: files, images/s and ETA. The rate counts the files accounted for since the first
    report, over the time since then: files skipped by --resume arrive at once and would inflate it, and
    an edited file is only reported done once the next chunk is computed."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.first: Optional[tuple[float, int]] = None  # (time, step) of the first report
        self.last = 0.0
        self.width = 0

    def on_file(self, rel: str, status: str, reason) -> None:
        if status == "failed" and not self.quiet:
            self._clear()
            print(f"  failed: {rel}: {reason}", file=sys.stderr)

    def __call__(self, phase: str, step: int, total: int, preview=None) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = (now, step)
        if self.quiet or (now - self.last < 0.5 and step < total):
            return
        self.last = now
        t_first, step_first = self.first
        rate = (step - step_first) / (now - t_first) if step > step_first and now > t_first else 0.0
        eta = f"ETA {_fmt_time((total - step) / rate)}" if rate > 0 else "ETA --"
        line = f"{phase}: {step}/{total} files  {rate:.2f} images/s  {eta}"
        if self.tty:
            self._clear()
            sys.stderr.write(line)
            self.width = len(line)
        else:
            print(line, file=sys.stderr)
        sys.stderr.flush()

    def _clear(self) -> None:
        if self.tty and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            self.width = 0


def _print_summary(summary, stream=None) -> None:
    # sys.stdout looked up per call, not bound at import: an embedding host may swap it later.
    stream = stream or sys.stdout
    print(f"done {summary.done}, skipped {summary.skipped}, failed {summary.failed} "
          f"(of {summary.total}; {summary.images_per_s:.2f} images/s)", file=stream)
    if summary.report_json:
        print(f"report: {summary.report_json} and {summary.report_csv.name}", file=stream)


def cmd_batch(args) -> int:
    from ..core.cancel import Cancelled, CancelToken
    from ..jobs.batch_job import BatchRequest, DiskFullError, run_batch
    from ..jobs.edit_job import EditRequest, parse_attribute_args, parse_schedule_arg
    from .edit_cmds import _session

    edit = EditRequest(attributes=parse_attribute_args(args.attr), schedule=parse_schedule_arg(args.schedule),
                       degree=args.degree, t0=args.t0, s_for=args.s_for, s_gen=args.s_gen, batch_size=args.batch_size,
                       eta=args.eta, sampler=args.sampler)
    req = BatchRequest(args.input_dir, args.output_dir, edit, recursive=args.recursive, fit=args.fit,
                       paste_back=args.paste_back, resume=args.resume, batch_size=args.batch_size, seed=args.seed,
                       force=args.force, faces=args.faces)
    session = _session(args)
    if args.compile:
        session.settings.compile_batches = True
    cancel = CancelToken()

    def on_sigint(signum, frame):  # first Ctrl-C: stop cleanly; a second one: the default
        cancel.cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nstopping after the current step… (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    printer = _Printer(args.quiet)
    try:
        summary = run_batch(session, req, progress=printer, cancel=cancel, on_file=printer.on_file)
    except DiskFullError as exc:
        printer._clear()
        print(f"dclip batch: {exc}", file=sys.stderr)
        _print_summary(exc.summary)
        return 1
    except Cancelled:
        printer._clear()
        print("dclip batch: cancelled; finished files are kept, --resume goes on from there", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    printer._clear()
    _print_summary(summary)
    return 0 if summary.failed == 0 else 1


def register(sub) -> None:
    import argparse

    from ..jobs.edit_job import SAMPLERS

    p = sub.add_parser("batch", help="edit every image of a folder (resumable, per-file error report)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input_dir", metavar="IN_DIR")
    p.add_argument("output_dir", metavar="OUT_DIR")
    p.add_argument("--attr", action="append", required=True, help="NAME[:WEIGHT], repeatable; weights sum to 1")
    p.add_argument("--degree", type=float, default=1.0, help="degree of change γ in [0, 1] (default 1)")
    p.add_argument("--schedule", help='time-dependent weights as JSON rows, e.g. "[[500,[1,0]],[0,[0.5,0.5]]]", or "t0": '
                   "each step to the attribute with the smallest t0 above it (coarse to fine)")
    p.add_argument("--recursive", action="store_true", help="include subfolders (mirrored in OUT_DIR)")
    p.add_argument("--fit", choices=FIT_POLICIES, default="center-crop", help="how to fit non-square images")
    p.add_argument("--paste-back", dest="paste_back", action="store_true",
                   help="paste the edit back into the photo at its original size")
    p.add_argument("--faces", choices=FACE_MODES, default="auto",
                   help="align each face in the photo, edit it and paste it back at full resolution "
                        "(auto: on face bases such as celebahq, when facenet-pytorch is installed)")
    p.add_argument("--resume", action="store_true", help="skip files finished by an earlier run into OUT_DIR")
    p.add_argument("--force", action="store_true",
                   help="resume with changed settings, or start a new batch over an earlier one")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=8, help="images per engine batch (8)")
    p.add_argument("--seed", type=int, default=0,
                   help="with η > 0, each file's noise comes from this and its name (default 0); recorded in every output")
    p.add_argument("--eta", type=float, default=0.0,
                   help="η of the generation in [0, 1]: 0 is deterministic (default), more adds fresh noise")
    p.add_argument("--sampler", choices=SAMPLERS, default="ddim",
                   help="ddim (default) or ddpm: ancestral sampling, DDIM with η = 1")
    p.add_argument("--t0", type=int, default=None, help="return step t0 (default: the attributes' largest)")
    p.add_argument("--s-for", dest="s_for", type=int, default=40, help="inversion steps S_for (default 40)")
    p.add_argument("--s-gen", dest="s_gen", type=int, default=40, help="generation steps S_gen (default 40)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the UNets (CUDA, or a CPU with a C++ compiler; 1–2 min once, then"
                        " faster: pays for long batches; also Settings → compile_batches)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_batch)
