"""`dclip demo`: fine-tune and measure attributes on the bundled demo world, by the default path."""

from __future__ import annotations

from pathlib import Path

from .progress import BarProgress


def _print_row(report: dict) -> None:
    m, p = report["metrics"], report["pair"]
    verdict = "" if "passes" not in report else ("  bar met" if report["passes"] else "  BAR NOT MET")
    print(f"'{p['source']}' → '{p['target']}' (t0 {report['finetune']['t0']}): {m['n']} held-out scenes, "
          f"success {m['success']:.0%}, mask IoU {m['iou']:.3f}, background MAE {m['background_mae']:.4f}, "
          f"fine-tune {report['seconds']['finetune']} s{verdict}", flush=True)


def cmd_demo(args) -> int:
    from ..jobs.demo_job import DemoRequest, run_demo, run_matrix
    from .edit_cmds import _session

    session = _session(args)
    req = DemoRequest(preset=args.preset, source=args.src, target=args.tgt, n_train=args.train, n_eval=args.eval,
                      epochs=args.epochs, seed=args.seed)
    out = Path(args.out)
    with BarProgress(args.quiet) as bar:
        if args.matrix or args.kind:
            rows = run_matrix(session, req, out, args.kind, progress=bar, on_row=_print_row)
            met = sum(r["passes"] for r in rows)
            print(f"{met} of {len(rows)} pairs meet their bar; wrote {out / 'demo-matrix.md'}, "
                  f"{out / 'demo-matrix.json'} and {out / 'demo-matrix.png'}")
            return 0
        report = run_demo(session, req, out, progress=bar)
    print(report["training_images"]["summary"])
    _print_row(report)
    print(f"wrote {out / 'demo-grid.png'} and {out / 'demo-metrics.json'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="fine-tune attributes on the demo world the default way, edit held-out scenes, "
                                    "measure by pixels")
    p.add_argument("--out", default="dclip-demo", help="output folder for the grid PNG and metrics JSON")
    p.add_argument("--preset", default="red", help="demo preset: red, circle or 'gray background' (default red)")
    p.add_argument("--src", help="source text of your own (with --tgt), e.g. green")
    p.add_argument("--tgt", help="target text of your own (with --src), e.g. red")
    p.add_argument("--matrix", action="store_true",
                   help="every ordered colour, shape and background pair (24 attributes; about 1 min each on 2 cores)")
    p.add_argument("--kind", action="append", choices=("colour", "shape", "background"),
                   help="with --matrix: only this kind of pair (repeatable)")
    p.add_argument("--train", type=int, default=24, help="training images kept from the base's samples (default 24)")
    p.add_argument("--eval", type=int, default=16, help="held-out scenes to edit per pair (default 16)")
    p.add_argument("--epochs", type=int, default=None, help="fine-tune epochs (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
