"""`dclip reconstruct | finetune | edit | translate | info`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..core.config import CLIP_LOSS_FORMS, LR_SCHEDULES, MODES, FinetuneConfig, config_from_recipe
from ..core.finetune import SAMPLE_STEPS
from ..jobs.edit_job import SAMPLERS
from ..jobs.errors import JobError
from ..jobs.face_edit import FACE_MODES
from ..jobs.images import FIT_POLICIES, list_images, load_image, save_png, tensor_to_pil
from ..jobs.metadata import read_metadata
from ..jobs.output_paths import output_targets
from ..zoo.registry import RECIPE_KEYS
from .progress import BarProgress, download_bars


def _session(args):
    from ..jobs.session import Session
    from ..jobs.settings import Settings

    settings = Settings.load()
    if args.device:
        settings.device = args.device
    if args.precision:
        settings.precision = args.precision
    settings.offline = settings.offline or args.offline
    session = Session(settings)
    session.downloads = download_bars(args.quiet)  # what a job's loads fetch, shown in bytes
    return session


def cmd_reconstruct(args) -> int:
    from ..jobs.edit_job import reconstruct_tensor

    session = _session(args)
    spec = session.spec(args.base)
    t0 = args.t0 if args.t0 is not None else spec.recipe.get("t0", FinetuneConfig.t0)
    [out] = output_targets(args.output, [Path(args.image).stem], "_recon", [args.image])
    img = load_image(args.image, spec.resolution, args.fit)
    with BarProgress(args.quiet) as bar:
        recon, metrics = reconstruct_tensor(session, args.base, img.tensor[None], t0, args.s_for, args.s_gen,
                                            progress=bar)
    meta = {"operation": "reconstruct", "base_id": args.base, "t0": t0, "s_for": args.s_for, "s_gen": args.s_gen}
    save_png(recon[0], out, meta)
    print(f"MAE {metrics['mae']:.4f}  SSIM {metrics['ssim']:.4f}  → {out}")
    return 0


def _config_from_args(args, recipe: dict) -> FinetuneConfig:
    """The options given, then `recipe` (the base's recipe for this text pair, refined by its kind of edit
    and by a preset of exactly this pair) for the ones left out, then FinetuneConfig's defaults."""
    given = dict(s_for=args.s_for, s_gen=args.s_gen, lambda_clip=args.lambda_clip,
                 lr_schedule=args.lr_schedule, mode=args.mode, lora_rank=None if args.full else args.rank,
                 batch_size=args.batch_size, seed=args.seed)
    # The recipe's options default to None on the command line: None is "left out", not a value.
    given.update({k: getattr(args, k) for k in RECIPE_KEYS if getattr(args, k, None) is not None})
    cfg = config_from_recipe(recipe, given)
    cfg.validate()
    return cfg


def cmd_finetune(args) -> int:
    from tqdm import tqdm

    from ..jobs.finetune_job import FinetuneRequest, run_finetune
    from ..jobs.progress import finetune_phases
    from ..zoo.registry import recipe_for

    session = _session(args)
    spec = session.spec(args.base)
    config = _config_from_args(args, recipe_for(spec, args.src, args.tgt))
    images = list_images(args.images) if args.images else None
    req = FinetuneRequest(base_id=args.base, source=args.src, target=args.tgt, name=args.name,
                          config=config, images=images, sample_count=args.sample,
                          oversample=args.oversample, sample_steps=args.sample_steps, filter_photos=args.filter,
                          dense=args.dense)

    def on_images(chosen) -> None:
        tqdm.write(chosen.summary())
        if chosen.cache_summary():
            tqdm.write(chosen.cache_summary())

    with BarProgress(args.quiet, phases=finetune_phases(req)) as bar:
        entry = run_finetune(session, req, progress=bar, on_step=bar.on_step, on_images=on_images,
                             on_metrics=lambda epoch, m: tqdm.write(f"epoch {epoch + 1}: held-out {m.line()}"))
    print(f"saved attribute '{entry.name}' ({entry.id}) to {entry.path}")
    return 0


def _edit_request(args, session, degree: float):
    from ..jobs.edit_job import EditRequest, parse_attribute_args, parse_schedule_arg

    return EditRequest(attributes=parse_attribute_args(args.attr), schedule=parse_schedule_arg(args.schedule),
                       degree=degree, t0=args.t0, s_for=args.s_for, s_gen=args.s_gen, eta=args.eta,
                       sampler=args.sampler, seed=args.seed)


def cmd_edit(args) -> int:
    import dataclasses

    from ..jobs.edit_job import build_edit, edit_tensor, parse_degrees
    from ..jobs.face_edit import edit_faces, faces_wanted
    from ..jobs.images import open_image

    session = _session(args)
    if args.from_png:
        return _edit_from(args, session)
    if not args.attr:
        raise JobError("give an attribute (--attr NAME[:WEIGHT]), or --from OUTPUT.png to redo an output's edit")
    degrees = parse_degrees(args.degree)
    req = _edit_request(args, session, degrees[0])
    edit = build_edit(session, req)
    spec = session.spec(edit.base_id)
    paths = [Path(p) for p in args.images]
    strip = len(degrees) > 1
    targets = output_targets(args.output, [p.stem for p in paths], "_strip" if strip else "_edit", paths)
    report = _MetricsReport(args, session, edit)
    meta = edit.metadata(session)
    if strip:  # one image per input: the edit at each γ side by side; the PNG records the list
        meta = {**{k: v for k, v in meta.items() if k != "degree"}, "operation": "edit-strip", "degrees": degrees}
    # A strip runs the edit once per γ: the latent cache makes every inversion after the first free.
    reqs = [dataclasses.replace(req, degree=g) for g in degrees]
    if faces_wanted(args.faces, spec.domain):
        from ..core.face_align import face_detector

        detector = face_detector()  # one for every photo: building MTCNN loads its three nets
        # each photo keeps its size: its faces are aligned, edited and pasted back
        for j, (p, target) in enumerate(zip(paths, targets)):
            photo, outs = open_image(p), []
            # photo j's faces draw their noise (η > 0) from seed + j, + j + 1, …: recorded, so --from redoes it
            seeded = [dataclasses.replace(r, seed=req.seed + j) for r in reqs]
            for r in seeded:
                pairs = []

                def edit_aligned(x, bar, r=r, pairs=pairs):
                    y = edit_tensor(session, r, x, progress=bar)
                    pairs.append((x, y))
                    return y

                with BarProgress(args.quiet) as bar:
                    out, count = edit_faces(photo, p.name, spec.resolution,
                                            lambda x, bar=bar, f=edit_aligned: f(x, bar), detector)
                outs.append(out)
                report.add(p, target, *pairs[0], degree=r.degree if strip else None)
            save_png(_side_by_side(outs), target, {**_seeded(meta, req, j), "source_image": p.name, "faces": count,
                                                   "batch_size": min(count, req.batch_size)})
            print(f"{p} → {target} ({count} face{'s' if count != 1 else ''})")
            report.flush()
        return report.finish()
    import torch

    x = torch.stack([load_image(p, spec.resolution, args.fit).tensor for p in paths])
    outs = []
    for r in reqs:
        with BarProgress(args.quiet) as bar:
            outs.append(edit_tensor(session, r, x, progress=bar))
    for i, (p, target) in enumerate(zip(paths, targets)):
        save_png(_side_by_side([tensor_to_pil(o[i]) for o in outs]), target,
                 {**_seeded(meta, req, i), "source_image": p.name, "batch_size": min(len(paths), req.batch_size)})
        print(f"{p} → {target}")
        for r, o in zip(reqs, outs):
            report.add(p, target, x[i : i + 1], o[i : i + 1], degree=r.degree if strip else None)
        report.flush()
    return report.finish()


def _edit_from(args, session) -> int:
    """`dclip edit IMG… --from OUTPUT.png`: the edit OUTPUT.png's settings describe, on each IMG; refused
    when an attribute or the base is missing or not the one that made it (edit_from_metadata)."""
    from ..jobs.batch_job import edit_from_metadata

    defaults = {"--degree": "1", "--s-for": 40, "--s-gen": 40, "--eta": 0.0, "--sampler": "ddim", "--seed": 0}
    chosen = {"--degree": args.degree, "--s-for": args.s_for, "--s-gen": args.s_gen, "--eta": args.eta,
              "--sampler": args.sampler, "--seed": args.seed}
    given = [name for name, value in (("--attr", args.attr), ("--schedule", args.schedule), ("--t0", args.t0))
             if value is not None] + [k for k, v in chosen.items() if v != defaults[k]]
    if given:
        raise JobError(f"--from takes every setting from {args.from_png}; drop {', '.join(given)}")
    meta = read_metadata(args.from_png)
    if meta.get("operation") == "edit-strip":
        raise JobError(f"{args.from_png} is a γ strip; give one of the single edits to --from")
    paths = [Path(p) for p in args.images]
    targets = output_targets(args.output, [p.stem for p in paths], "_edit", paths)
    for p, target in zip(paths, targets):
        out = edit_from_metadata(session, meta, p)
        save_png(out, target, {**meta, "source_image": p.name})
        print(f"{p} → {target} (the edit of {args.from_png})")
    return 0


def _seeded(meta: dict, req, i: int) -> dict:
    """Image i's metadata: with η > 0 it drew its noise from seed + i (edit_tensor), which is what
    reproduces it alone."""
    return {**meta, "seed": req.seed + i} if req.stochastic else meta


def _side_by_side(images):
    """The images left to right (a strip); one image as it is."""
    from PIL import Image

    if len(images) == 1:
        return images[0]
    w, h = images[0].size
    out = Image.new("RGB", (w * len(images), h))
    for k, img in enumerate(images):
        out.paste(img, (k * w, 0))
    return out


class _MetricsReport:
    """`--metrics` prints each output's numbers under its line (one line per γ of a strip); `--json FILE`
    (implies --metrics) also writes them, one object per output and γ, plus what could not be measured
    and why."""

    def __init__(self, args, session, edit) -> None:
        self.on = bool(args.metrics or args.json)
        self.json_path = Path(args.json).expanduser() if args.json else None
        self.session, self.edit, self.rows, self.pending, self.unavailable = session, edit, [], [], {}
        if self.json_path is not None and os.path.lexists(self.json_path) and (
                self.json_path.is_symlink() or not self.json_path.is_file()):  # before any work
            raise JobError(f"--json {self.json_path}: not a regular file; give a .json file name")

    def add(self, source: Path, output: Path, x_in, x_out, degree=None) -> None:
        if not self.on:
            return
        from ..jobs.edit_metrics import measure

        m = measure(self.session, self.edit, x_in, x_out)
        row = {"input": str(source), "output": str(output), **({} if degree is None else {"degree": degree}),
               **m.as_dict()}
        self.rows.append(row)
        self.pending.append(("" if degree is None else f"γ {degree:g}: ") + m.line())
        self.unavailable.update(m.unavailable)

    def flush(self) -> None:
        """Print what `add` measured, under the output's line."""
        for line in self.pending:
            print(f"  {line}")
        self.pending.clear()

    def finish(self) -> int:
        if not self.on:
            return 0
        for name, why in sorted(self.unavailable.items()):
            print(f"  {name}: not measured: {why}")
        if self.json_path is not None:
            from ..library.atomic import atomic_write_text

            doc = {"images": self.rows, "unavailable": self.unavailable}
            atomic_write_text(self.json_path, json.dumps(doc, indent=2) + "\n")
            print(f"metrics → {self.json_path}")
        return 0


def cmd_translate(args) -> int:
    from ..jobs.edit_job import EditRequest, build_edit, parse_attribute_args
    from ..jobs.progress import translate_phases
    from ..jobs.translate_job import TranslateRequest, translate_metadata, translate_tensor

    session = _session(args)
    edit = EditRequest(attributes=parse_attribute_args(args.attr), degree=args.degree, t0=args.t0,
                       s_for=args.s_for, s_gen=args.s_gen, eta=args.eta, sampler=args.sampler)
    spec = session.spec(build_edit(session, edit).base_id)
    req = TranslateRequest(edit=edit, seeds=list(range(args.seed, args.seed + args.seeds)), rounds=args.rounds,
                           project_t0=args.project_t0)
    stem = Path(args.image).stem
    targets = output_targets(args.output, [f"{stem}_seed{seed}" for seed in req.seeds], "", [args.image])
    x = load_image(args.image, spec.resolution, args.fit).tensor[None]
    with BarProgress(args.quiet, phases=translate_phases(req)) as bar:
        _, edited = translate_tensor(session, req, x, progress=bar)
    for seed, target, img in zip(req.seeds, targets, edited):
        save_png(img, target, translate_metadata(session, req, seed))
        print(target)
    return 0


def cmd_info(args) -> int:
    from ..untrusted import display

    meta = read_metadata(args.image)
    if args.json:  # ensure_ascii (the default) escapes every control and bidi character
        print(json.dumps(meta, indent=2, sort_keys=True))
        return 0
    # Anyone can write a PNG's text: keys and values go through display() so a control or bidi
    # character cannot move the cursor, recolour the terminal or reorder what the user reads.
    for k, v in sorted(meta.items()):
        shown = json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
        print(f"{display(k)}: {display(shown)}")
    return 0


def _add_common(p: argparse.ArgumentParser, t0_default=None) -> None:
    p.add_argument("--t0", type=int, default=t0_default, help="return step t0 (1..999; default: from preset/attribute)")
    p.add_argument("--s-for", dest="s_for", type=int, default=40, help="inversion steps S_for (default 40)")
    p.add_argument("--fit", choices=FIT_POLICIES, default="center-crop", help="how to fit non-square images")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eta", type=float, default=0.0,
                   help="η of the generation in [0, 1]: 0 is deterministic (default), more adds fresh noise: variations")
    p.add_argument("--sampler", choices=SAMPLERS, default="ddim",
                   help="ddim (default) or ddpm: ancestral sampling, DDIM with η = 1")
    p.add_argument("--seed", type=int, default=0, help="with η > 0: the noise of image i comes from seed + i (default 0)")


def register(sub) -> None:
    p = sub.add_parser("reconstruct", help="invert an image and regenerate it with the base (prints MAE/SSIM)")
    p.add_argument("image")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--base", default="demo-shapes")
    _add_common(p)
    p.add_argument("--s-gen", dest="s_gen", type=int, default=40)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("finetune", help="fine-tune an attribute model from a text pair and save it to the library")
    p.add_argument("--base", default="demo-shapes")
    p.add_argument("--src", required=True, help="source text, e.g. 'face'")
    p.add_argument("--tgt", required=True, help="target text, e.g. 'angry face'")
    p.add_argument("--name", required=True, help="name in the library")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", help="folder of training photos")
    src.add_argument("--sample", type=int, default=24, help="sample N training images from the base (default 24)")
    p.add_argument("--oversample", type=int, default=6,
                   help="sample this many times N and keep the N that CLIP reads best as the source text "
                        "(default 6; 1 keeps every sample)")
    p.add_argument("--sample-steps", dest="sample_steps", type=int, default=SAMPLE_STEPS,
                   help=f"DDIM steps per sampled image (default {SAMPLE_STEPS}); fewer are faster but blurrier. "
                        "Samples are cached: a later fine-tune with the same base, seed and steps reuses them")
    p.add_argument("--filter", action="store_true",
                   help="with --images: train only on the photos CLIP reads as the source text")
    _add_common(p)
    p.add_argument("--s-gen", dest="s_gen", type=int, default=6, help="generation steps while training (default 6)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the base's recipe for this pair)")
    p.add_argument("--lr", type=float, default=None, help="Adam lr (default: the recipe's, else 1e-3 LoRA, 4e-6 full)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant")
    p.add_argument("--mode", choices=MODES, default="efficient", help="efficient (Alg. 2) or full_chain (Alg. 1)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
    p.add_argument("--full", action="store_true", help="train all weights instead of a LoRA")
    p.add_argument("--dense", action="store_true",
                   help="with --full: store the dense fp16 delta instead of the smallest per-layer low-rank one "
                        "whose held-out preview stays within 1 level (mean) of it")
    p.add_argument("--lambda-clip", type=float, default=3.0)
    p.add_argument("--lambda-l1", type=float, default=None, help="L1 weight (default: the base's recipe for this pair)")
    p.add_argument("--lambda-face", type=float, default=None,
                   help="identity loss weight (default: the base's recipe: 0.3 on face bases, else 0)")
    p.add_argument("--clip-loss", dest="clip_loss_form", choices=CLIP_LOSS_FORMS, default=None,
                   help="directional loss form: −log((1+cos)/2) or 1−cos (default: the base's recipe for this pair)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("edit", help="apply one attribute or a mix of attributes to images")
    p.add_argument("images", nargs="+")
    p.add_argument("--attr", action="append", help="NAME[:WEIGHT], repeatable; weights sum to 1")
    p.add_argument("--from", dest="from_png", metavar="OUTPUT.png",
                   help="redo the edit that made OUTPUT.png (its attributes, mix, γ, t0, steps, η, seed) on IMG")
    p.add_argument("--degree", default="1", help="degree of change γ in [0, 1] (default 1); a list such as "
                   "0,0.25,0.5,0.75,1 writes a strip of the edit at each")
    p.add_argument("--schedule", help='time-dependent weights as JSON rows, e.g. "[[500,[1,0]],[0,[0.5,0.5]]]", or "t0": '
                   "each step to the attribute with the smallest t0 above it (coarse to fine)")
    p.add_argument("-o", "--output", required=True, help="output file (one image) or folder")
    p.add_argument("--faces", choices=FACE_MODES, default="auto",
                   help="align each face in the photo, edit it and paste it back at full resolution "
                        "(auto: on face bases such as celebahq, when facenet-pytorch is installed)")
    _add_sampling(p)
    p.add_argument("--metrics", action="store_true",
                   help="print S_dir, MAE and SSIM against the input (and ID on faces, LPIPS where installed)")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to FILE as JSON (implies --metrics)")
    _add_common(p)
    p.add_argument("--s-gen", dest="s_gen", type=int, default=40)
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("translate", help="unseen-domain / stroke-conditioned translation into an attribute")
    p.add_argument("image")
    p.add_argument("--attr", action="append", required=True, help="NAME[:WEIGHT], repeatable")
    p.add_argument("--degree", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=8, help="K rounds of noising/denoising (default 8)")
    p.add_argument("--seeds", type=int, default=4, help="number of candidates (default 4)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--project-t0", dest="project_t0", type=int, default=None,
                   help="projection noise level (default: the base's; 300 on the demo, 500 on 256² bases)")
    p.add_argument("-o", "--output", required=True, help="output file (one seed) or folder")
    p.add_argument("--eta", type=float, default=0.0,
                   help="η of the edit's generation in [0, 1] (default 0); the noise comes from each candidate's seed")
    p.add_argument("--sampler", choices=SAMPLERS, default="ddim", help="ddim (default) or ddpm (η = 1)")
    _add_common(p)
    p.add_argument("--s-gen", dest="s_gen", type=int, default=40)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("info", help="print the settings stored in an output PNG")
    p.add_argument("image")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
