"""`dclip library ...`: list, show, rename, rm, restore, export, import, verify, gc, empty-trash."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..library.errors import LibraryError
from ..untrusted import display

# Everything printed here comes from manifests and folder names anyone can write: shown through
# display(), so an ESC sequence or a bidi override in a name shows as its escape instead of clearing
# the terminal or reordering the line. --json output is escaped by json.dumps (ensure_ascii).


def _library(args):
    from ..library.store import Library

    root = getattr(args, "library_dir", None)
    if not root:
        try:
            from ..jobs.settings import Settings

            root = Settings.load().library_dir
        except Exception:  # settings are optional for library commands
            root = None
    return Library(Path(root) if root else None)


def _mb(n: int) -> str:
    from ..library.store import size_text

    return size_text(n)


def _storage(e) -> str:
    """How the entry's weights are stored, with the measured error of a low-rank one."""
    rec = e.manifest.get("storage") if isinstance(e.manifest, dict) else None
    err = rec.get("error_vs_dense_levels") if isinstance(rec, dict) else None
    if e.kind == "low_rank" and isinstance(err, dict):
        return f"low rank, {_mb(rec.get('dense_bytes', 0))} dense, preview within {err.get('mean')} levels (mean)"
    return {"lora": "LoRA factors", "full_delta": "dense delta", "low_rank": "low rank"}.get(e.kind, "?")


def _row(e) -> dict:
    return {
        "id": e.id, "name": e.name, "base_id": e.base_id, "kind": e.kind, "t0": e.t0, "source": e.source,
        "target": e.target, "created": e.created, "size_bytes": e.size_bytes, "damaged": e.damaged,
        "path": str(e.path),
    }


def _table(rows: list[list[str]], headers: list[str]) -> str:
    rows = [[display(x) for x in r] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [headers, *rows]]
    return "\n".join(lines)


def cmd_list(args) -> int:
    lib = _library(args)
    entries = lib.trash() if args.trash else lib.list(args.base)
    if args.json:
        print(json.dumps([_row(e) for e in entries], indent=2))
        return 0
    if not entries:
        where = "the trash" if args.trash else f"the library ({lib.root})"
        print(display(f"{where} is empty" if not args.base else f"no attributes for base '{args.base}'"))
        return 0
    rows = []
    for e in entries:
        text = f"{e.source or '?'} → {e.target or '?'}"
        status = f"DAMAGED: {e.damaged}" if e.damaged else "ok"
        if args.trash:
            status = "deleted " + time.strftime("%Y-%m-%d %H:%M", time.localtime(e.deleted_at or 0))
        rows.append([e.name, e.id, e.base_id or "?", e.kind or "?", str(e.t0 or "?"), text, _mb(e.size_bytes),
                     status])
    print(_table(rows, ["NAME", "ID", "BASE", "KIND", "T0", "TEXT", "SIZE", "STATUS"]))
    damaged = sum(1 for e in entries if e.damaged)
    if damaged and not args.trash:
        print(f"\n{damaged} damaged entr{'y' if damaged == 1 else 'ies'}: `dclip library rm NAME` moves them to the trash")
    return 0


def cmd_show(args) -> int:
    lib = _library(args)
    entry = lib.find(args.name)
    if entry is None:
        raise LibraryError(f"no attribute named '{args.name}' in the library (see `dclip library list`)")
    if args.json:
        print(json.dumps({**_row(entry), "manifest": entry.manifest}, indent=2))
        return 0
    print(display(f"{entry.name}  ({entry.id})"))
    print(f"  folder:   {display(entry.path)}")
    print(f"  status:   {display('DAMAGED: ' + entry.damaged) if entry.damaged else 'ok'}")
    print(f"  size:     {_mb(entry.size_bytes)} ({display(_storage(entry))})")
    skip = {"name", "id"}
    for key, value in entry.manifest.items():
        if key not in skip:
            shown = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value
            print(display(f"  {key + ':':<17} {shown}"))
    return 0 if not entry.damaged else 1


def cmd_rename(args) -> int:
    entry = _library(args).rename(args.old, args.new)
    print(display(f"renamed to '{entry.name}' ({entry.id})"))
    return 0


def cmd_rm(args) -> int:
    lib = _library(args)
    for name in args.names:
        entry = lib.delete(name)
        print(display(f"moved '{entry.name}' ({entry.id}) to the trash; `dclip library restore {entry.id}` "
                      "brings it back"))
    return 0


def cmd_restore(args) -> int:
    entry = _library(args).restore(args.name, args.as_name)
    print(display(f"restored '{entry.name}' ({entry.id})"))
    return 0


def cmd_export(args) -> int:
    path = _library(args).export(args.name, Path(args.file))
    print(display(f"exported to {path} ({_mb(path.stat().st_size)})"))
    return 0


def cmd_import(args) -> int:
    from ..library.store import base_installed

    entry = _library(args).import_file(Path(args.file), name=args.name, base_id=args.base, dense=args.dense)
    print(display(f"imported '{entry.name}' ({entry.id}, base {entry.base_id}, t0 {entry.t0}, "
                  f"{_mb(entry.size_bytes)}, {_storage(entry)})"))
    if not base_installed(entry.base_id):
        print(display(f"note: base '{entry.base_id}' is not installed, so whether the weights fit it is "
                      "checked when the attribute is first used"))
    return 0


def cmd_verify(args) -> int:
    results = _library(args).verify()
    bad = 0
    for entry, ok, reason in results:
        bad += not ok
        print(display(f"{'ok     ' if ok else 'DAMAGED'}  {entry.name} ({entry.id}){'' if ok else ': ' + reason}"))
    print(f"{len(results)} entr{'y' if len(results) == 1 else 'ies'} checked, {bad} damaged")
    return 1 if bad else 0


def cmd_gc(args) -> int:
    report = _library(args).gc(trash_older_than_days=args.trash_days)
    for p in report.removed:
        print(display(f"removed {p}"))
    print(report)  # what it freed, in bytes of disk
    return 0


def cmd_empty_trash(args) -> int:
    report = _library(args).empty_trash(args.older_than)
    print(f"deleted {len(report.removed)} trashed attribute(s), freed {_mb(report.freed_bytes)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("library", help="manage the attribute library (list, share, repair)")
    p.add_argument("--library-dir", default=None, help="library folder (default: settings, $DCLIP_LIBRARY_DIR, "
                                                      "or the platform data dir)")
    sub = p.add_subparsers(dest="library_command", metavar="ACTION", required=True)

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.set_defaults(func=func)
        return sp

    sp = add("list", cmd_list, "list attributes (damaged ones are shown with the reason)")
    sp.add_argument("--base", default=None, help="only attributes for this base model")
    sp.add_argument("--trash", action="store_true", help="list the trash instead")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp = add("show", cmd_show, "show an attribute's manifest")
    sp.add_argument("name", help="name or id")
    sp.add_argument("--json", action="store_true")
    sp = add("rename", cmd_rename, "rename an attribute")
    sp.add_argument("old")
    sp.add_argument("new")
    sp = add("rm", cmd_rm, "move attributes to the trash (recoverable until the trash is emptied)")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp = add("restore", cmd_restore, "bring an attribute back from the trash")
    sp.add_argument("name")
    sp.add_argument("--as", dest="as_name", default=None, metavar="NEW_NAME", help="restore under another name")
    sp = add("export", cmd_export, "write an attribute to one .dclip file to share")
    sp.add_argument("name")
    sp.add_argument("file", help="target .dclip file or folder")
    sp = add("import", cmd_import, "import a .dclip file or an official DiffusionCLIP .pth checkpoint")
    sp.add_argument("file")
    sp.add_argument("--name", default=None, help="name in the library (default: from the file)")
    sp.add_argument("--base", default=None, help="base model of a .pth (default: guessed from its name)")
    sp.add_argument("--dense", action="store_true",
                    help="store a .pth's delta dense instead of the smallest per-layer low-rank form whose "
                         "preview stays within tolerance of it")
    add("verify", cmd_verify, "re-hash every weight file; exit code 1 if any entry is damaged")
    sp = add("gc", cmd_gc, "remove leftovers of interrupted writes")
    sp.add_argument("--trash-days", type=float, default=None, help="also delete trash older than N days")
    sp = add("empty-trash", cmd_empty_trash, "permanently delete trashed attributes")
    sp.add_argument("--older-than", type=float, default=None, metavar="DAYS", help="only those older than DAYS")
