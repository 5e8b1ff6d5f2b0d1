"""`dclip demo [--out DIR]`: fine-tune and measure one attribute on the bundled demo world."""

from __future__ import annotations

from pathlib import Path

from .progress import BarProgress


def cmd_demo(args) -> int:
    from ..jobs.demo_job import DemoRequest, run_demo
    from .edit_cmds import _session

    session = _session(args)
    req = DemoRequest(preset=args.preset, n_train=args.train, n_eval=args.eval, epochs=args.epochs, seed=args.seed)
    with BarProgress(args.quiet) as bar:
        report = run_demo(session, req, Path(args.out), progress=bar)
    m = report["metrics"]
    p = report["preset"]
    print(f"preset '{p['source']}' → '{p['target']}' (t0 {p['t0']}), attribute '{report['attribute']['name']}'")
    print(f"held-out scenes: {m['n']}  success {m['success']:.0%}  mask IoU {m['iou']:.3f}  "
          f"background MAE {m['background_mae']:.4f}")
    print(f"time: fine-tune {report['seconds']['finetune']} s, total {report['seconds']['total']} s")
    print(f"wrote {Path(args.out) / 'demo-grid.png'} and {Path(args.out) / 'demo-metrics.json'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="sample demo scenes, fine-tune one attribute, edit held-out scenes, measure")
    p.add_argument("--out", default="dclip-demo", help="output folder for the grid PNG and metrics JSON")
    p.add_argument("--preset", default="red", help="demo preset: red, circle or 'gray background' (default red)")
    p.add_argument("--train", type=int, default=48, help="training scenes (default 48)")
    p.add_argument("--eval", type=int, default=16, help="held-out scenes to edit (default 16)")
    p.add_argument("--epochs", type=int, default=None, help="fine-tune epochs (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
