"""`dclip models list | download | verify | add`: the base models, CLIP and face nets the app knows."""

from __future__ import annotations

from .progress import BytesBar


def cmd_list(args) -> int:
    from ..zoo import download, registry

    rows = [("id", "kind", "installed", "title")]
    default = registry.default_base().id
    for b in registry.list_bases():
        mark = " (default)" if b.id == default else ""
        rows.append((b.id + mark, f"base {b.arch} {b.resolution}²", "yes" if download.is_installed(b) else "no", b.title))
    for c in registry.list_clips():
        rows.append((c.name, "clip", "yes" if download.is_installed(c) else "no", c.title))
    for f in registry.list_faces():
        rows.append((f.id, "face", "yes" if download.is_installed(f) else "no", f.title))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    if args.presets:
        for b in registry.list_bases():
            for p in b.presets:
                print(f"{b.id}: {p.name}: '{p.source}' → '{p.target}'  t0={p.t0}")
    return 0


def _offline(args) -> bool:
    from ..jobs.settings import Settings

    return args.offline or Settings.load().offline


def _offline_switches(args) -> list[str]:
    """What turns offline mode on, each as what the user does to turn it off."""
    import os

    from ..jobs.settings import Settings
    from ..zoo import download

    switches = ["drop --offline"] if args.offline else []
    if download.is_offline(False):
        switches.append(f"unset DCLIP_OFFLINE (it is {os.environ.get('DCLIP_OFFLINE')!r})")
    if Settings.load().offline:
        switches.append("turn offline mode off in Settings")
    return switches


def cmd_download(args) -> int:
    from ..errors import MissingWeights
    from ..zoo import download

    offline = _offline(args)
    for model_id in args.ids:
        bar = BytesBar(model_id)
        try:
            path = download.download(model_id, progress=bar, offline=offline)
        except download.MissingWeightsError as exc:
            if not download.is_offline(offline):
                raise
            # Running the same command again would only fail again: say what to switch off first.
            where = exc.path.parent if exc.path else download.model_dir(model_id)
            raise MissingWeights(
                f"dclip models download {model_id} cannot download while offline mode is on "
                f"({exc.filename} is not in {where}): "
                f"{' and '.join(_offline_switches(args)) or 'switch offline mode off'}, then run it again"
            ) from None
        finally:
            bar.close()
        print(f"{model_id}: ready in {path}")
    return 0


def cmd_verify(args) -> int:
    """One line a file: pinned (matches the published sha256), first-use (matches the sha256 recorded when
    it was first downloaded: there is no published one), or MISMATCH."""
    from ..zoo import download, registry

    ids = args.ids or [m for m in registry.all_model_ids() if download.is_installed(m)]
    bad, offline = 0, _offline(args)
    for model_id in ids:
        for name, ok, reason in download.verify_model(model_id, repair_bad=args.repair, offline=offline):
            bad += not ok
            print(f"{model_id}: {reason or name}")
    return 1 if bad else 0


def cmd_add(args) -> int:
    from ..zoo.add_file import add_base_file

    added = add_base_file(args.base, args.file)
    print(f"{args.base}: added {added.path.name} ({added.layout}, sha256 {added.sha256[:12]}…) in {added.path.parent}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="list, download, verify and add base models, CLIP and face nets")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = msub.add_parser("list", help="list known models and whether they are installed")
    q.add_argument("--presets", action="store_true", help="also list each base's presets with their t0")
    q.set_defaults(func=cmd_list)
    q = msub.add_parser("download", help="download models into the cache (resumes, checks sha256)")
    q.add_argument("ids", nargs="+", metavar="ID")
    q.set_defaults(func=cmd_download)
    q = msub.add_parser("verify", help="check the sha256 of installed models (default: all installed)")
    q.add_argument("ids", nargs="*", metavar="ID")
    q.add_argument("--repair", action="store_true", help="download damaged or missing files again")
    q.set_defaults(func=cmd_verify)
    q = msub.add_parser("add", help="install a base's weights from a file you have (checked against the base's "
                        "architecture; diffusers, original DDPM .ckpt or ADM layout)")
    q.add_argument("base", metavar="BASE")
    q.add_argument("file", metavar="FILE")
    q.set_defaults(func=cmd_add)
