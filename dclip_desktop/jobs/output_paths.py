"""Where `-o OUT` puts the results of `dclip edit`, `translate` and `reconstruct`.

One result and a file name: that file (replaced, as an editor's "Save as" does, unless it is an
input). Several results, an existing folder, or a name ending in "/": a folder, with one
`<stem><suffix>.png` per result, never replacing a file already there (`name (2).png` instead,
as Lightroom's export does) and never giving two results one name. Several results and one file
name is refused before any work is done: the first results would be lost.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import JobError


def is_folder_target(output: str | os.PathLike) -> bool:
    text = os.fspath(output)
    return text.endswith(("/", os.sep)) or Path(text).expanduser().is_dir()


def output_targets(output: str | os.PathLike, stems: list[str], suffix: str,
                   inputs: list[str | os.PathLike] = ()) -> list[Path]:
    """One target path per result; `stems[i]` names result i in folder mode."""
    out = Path(output).expanduser()
    folder = is_folder_target(output) or len(stems) > 1
    if not folder:
        targets = [out]
    else:
        if out.exists() and not out.is_dir():
            raise JobError(f"{out}: {len(stems)} results need a folder, and this is a file; give a folder "
                           f"(e.g. -o {out.with_suffix('')}/)")
        if not is_folder_target(output) and out.suffix:
            raise JobError(f"{len(stems)} results would all be written to the one file {out}: give a folder "
                           f"instead (e.g. -o {out.with_suffix('')}/)")
        out.mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        targets = []
        for stem in stems:
            name, k = f"{stem}{suffix}.png", 2
            while name.casefold() in taken or os.path.lexists(out / name):
                name, k = f"{stem}{suffix} ({k}).png", k + 1
            taken.add(name.casefold())
            targets.append(out / name)
    srcs = {Path(p).resolve() for p in inputs}
    for target in targets:
        if os.path.lexists(target) and (target.is_symlink() or not target.is_file()):
            # os.replace would put our PNG where a device, pipe or link was (as root, over /dev/full)
            raise JobError(f"{target}: not a regular file; give a .png file name or a folder")
        if target.resolve() in srcs:
            raise JobError(f"{target}: refusing to overwrite the input image; choose another output path")
    return targets
