"""Property-based fuzzing of every parser of data from disk (issue 17): whatever the bytes, only the
project's own error types may escape.

Each parser gets raw text, random JSON, and valid documents with one field replaced by a random
value (the mutations an editor of the file would make). CI runs the "ci" profile (200 examples per
parser, set in conftest.py); a longer run is one command:

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q tests/test_fuzz_parsers.py
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from dclip_desktop.jobs import batch_manifest as bm
from dclip_desktop.jobs.errors import JobError
from dclip_desktop.library import manifest as mf
from dclip_desktop.untrusted import UntrustedDataError, contained, loads_object

NUMBERS = st.one_of(st.integers(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, -1, 999, 1000, 1e308, -1e308, 1e20, 2**63]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=40))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def _dumps(value) -> str:
    return json.dumps(value, allow_nan=True)


def mutated(valid: dict | list) -> st.SearchStrategy[str]:
    """`valid` with one field (at any depth) set to a random value or removed, as JSON text."""
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((*path, k))
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append((*path, i))
                walk(v, (*path, i))

    walk(valid, ())

    @st.composite
    def build(draw):
        doc = json.loads(json.dumps(valid))
        path = draw(st.sampled_from(paths))
        node = doc
        for k in path[:-1]:
            node = node[k]
        if draw(st.booleans()) and isinstance(node, dict):
            del node[path[-1]]
        else:
            node[path[-1]] = draw(VALUES)
        return _dumps(doc)

    return build()


def anything(valid: dict | list) -> st.SearchStrategy:
    return st.one_of(mutated(valid), VALUES.map(_dumps), st.text(max_size=200), st.binary(max_size=200),
                     st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
                     st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n))


VALID_MANIFEST = {
    "schema_version": 1, "id": "a1b2c3d4", "name": "blue", "kind": "lora", "base_id": "demo-shapes",
    "weights_sha256": "ab" * 32, "weights_bytes": 1234, "created": "2026-12-02T10:00:00Z", "source": "red",
    "target": "blue", "t0": 501, "s_for": 40, "s_gen": 6, "lambdas": {"clip": 3.0, "l1": 3.0, "face": 0.0},
    "thumbnails": ["before.png"],
}
VALID_V0 = {"version": 0, "id": "a1b2c3d4", "name": "old", "base": "demo-shapes", "sha256": "cd" * 32, "size": 10,
            "t_0": 400, "created": 1700000000, "clip_loss_w": 3.0, "rank": 4}
VALID_BATCH = {"format": bm.FORMAT, "batch_id": "0f" * 16, "created": 1.0, "current": "k",
               "settings": {"k": {"edit": {"t0": 300}}},
               "files": {"a.png": {"status": "done", "output": "a.png", "size": 10, "mtime_ns": 5, "reason": None,
                                   "settings": "k"},
                         "sub/b.jpg": {"status": "failed", "output": None, "reason": "bad", "size": 3}}}
VALID_META = {"operation": "edit", "app_version": "0.1", "base_id": "demo-shapes", "base_sha256": "ab" * 32,
              "attributes": [{"id": "a1b2c3d4", "name": "blue", "weight": 1.0, "sha256": "cd" * 32}],
              "degree": 1.0, "t0": 500, "s_for": 40, "s_gen": 40, "schedule": None, "seed": 0,
              "source_image": "red.png"}
VALID_SETTINGS = {"device": "cpu", "precision": "fp32", "offline": False, "memory_layout": "auto",
                  "compile_batches": False, "library_dir": None, "cache_dir": "/tmp/x", "preview_every": 2,
                  "default_base": "demo-shapes"}


@given(anything(VALID_MANIFEST) | anything(VALID_V0))
def test_library_manifest(text):
    try:
        mf.parse(text)
    except mf.ManifestError:
        pass


@given(anything(VALID_BATCH))
def test_batch_manifest(text):
    try:
        data = bm.parse_manifest(text, "/tmp/out")
    except bm.ManifestDamaged:
        return
    for entry in data["files"].values():  # whatever got through names a file inside OUT_DIR
        if entry.get("output") is not None:
            contained("/tmp/out", entry["output"], "fuzz")


@given(anything(VALID_META))
def test_png_metadata(text):
    from dclip_desktop.jobs.metadata import MetadataError, parse_metadata

    try:
        parse_metadata(text)
    except MetadataError:
        pass


@given(anything([[500, [1.0, 0.0]], [0, [0.5, 0.5]]]))
def test_schedule(text):
    from dclip_desktop.jobs.edit_job import parse_schedule_arg

    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        rows = parse_schedule_arg(text)
    except JobError:
        return
    if rows not in (None, "t0"):
        for threshold, weights in rows:
            assert isinstance(threshold, int) and 0 <= threshold <= 999
            assert all(isinstance(w, float) for w in weights)


@given(anything(VALID_SETTINGS))
def test_settings_never_raise(text):
    from dclip_desktop.jobs.settings import Settings

    settings, problems = Settings.parse(text)
    assert isinstance(settings, Settings) and isinstance(problems, list)


@given(st.one_of(st.text(max_size=60), st.binary(max_size=60)))
def test_loads_object_and_contained(data):
    try:
        loads_object(data, "fuzz")
    except UntrustedDataError:
        pass
    if isinstance(data, str):
        try:
            path = contained("/tmp/out", data, "fuzz")
        except UntrustedDataError:
            return
        assert path.resolve().is_relative_to("/tmp/out")
