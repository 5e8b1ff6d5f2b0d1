"""`dclip bench`: time the engine against the reference loop; print a table, optionally write JSON."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure inversion, edit and fine-tune speed against the reference loop",
        description="Builds the chosen architecture from its config (random weights where no trained ones are "
        "bundled), times batched inversion, edits at (200,40) and (40,40), one fine-tune epoch per mode with "
        "LoRA and full weights, and the faithful reference loop in the same run; reports ratios, peak memory and "
        "the reconstruction MAE of each precision mode against fp32.",
    )
    p.add_argument("--config", default="demo", choices=["demo", "ddpm256"], help="architecture (default: demo)")
    p.add_argument("--quick", action="store_true", help="fewer images and repetitions (fewer steps on a CPU)")
    p.add_argument("--json", dest="json_file", metavar="FILE", default=None, help="also write the results as JSON")
    # Own dests: the top-level --device/--precision must not be overwritten by these defaults.
    p.add_argument("--device", dest="bench_device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--precision", dest="bench_precision", default=None,
                   help="auto (guarded choice), fp32, tf32, bf16 or fp16 (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (CUDA, or CPU with a C++ compiler)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..bench.runner import run_bench

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    device = args.bench_device or getattr(args, "device", None)
    precision = args.bench_precision or getattr(args, "precision", None) or "auto"
    # a bad device or precision is a BadInput: `cli.main` prints it as one line, exit code 2
    run_bench(config=args.config, quick=args.quick, device=device, precision=precision,
              json_path=args.json_file, compile_models=args.compile)
    return 0
