"""Atomic save and exact resume of a trainer's state.

A checkpoint is one ``.npz`` file: every array of the (nested) state as its own
member, plus a JSON member with everything else (numbers, RNG states, history),
the run's config, a format version and a SHA-256 of the content. Saving writes a
temporary file in the same directory, reads it back and checks it, and only
then renames it over the old one, so a crash or Ctrl-C never leaves a damaged
checkpoint where a good one was.
"""
import hashlib
import json
import os
import zipfile

import numpy  # checkpoints hold host arrays only, whatever the backend

from . import files

FORMAT = "npgan-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or from another configuration."""


def _split(obj, arrays):
    """Nested dict/list state -> JSON-able tree, arrays moved into ``arrays``."""
    if isinstance(obj, numpy.ndarray) or type(obj).__module__.startswith("cupy"):
        arrays.append(numpy.asarray(obj.get() if hasattr(obj, "get") else obj))
        return {"__array__": len(arrays) - 1}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _split(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split(v, arrays) for v in obj]
    if isinstance(obj, numpy.generic):
        return obj.item()
    return obj


_KEY_TYPES = (str, int, float, bool, type(None))     # what a JSON pair's key can be


def _join(tree, arrays):
    """Inverse of _split. A node _split cannot have written (an array index out
    of range, a malformed dict) raises CheckpointError."""
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            i = tree["__array__"]
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(arrays):
                raise CheckpointError(f"array index {i!r} is not one of the {len(arrays)} "
                                      "stored arrays")
            return arrays[i]
        items = tree["__dict__"] if set(tree) == {"__dict__"} else None
        if not isinstance(items, list) or not all(
                isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], _KEY_TYPES)
                for kv in items):
            raise CheckpointError(f"malformed node {str(tree)[:100]}")
        return {k: _join(v, arrays) for k, v in items}
    if isinstance(tree, list):
        return [_join(v, arrays) for v in tree]
    return tree


def _digest(meta_json, arrays):
    h = hashlib.sha256(meta_json.encode())
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(numpy.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def save(path, state, config=None):
    """Write ``state`` (nested dicts/lists of arrays and plain values) and
    ``config`` (a JSON-able dict describing the run) to ``path`` atomically."""
    arrays = []
    meta = json.dumps({"format": FORMAT, "config": config or {}, "state": _split(state, arrays)})
    members = {f"a{i}": a for i, a in enumerate(arrays)}
    members["meta"] = numpy.array(meta)
    members["sha256"] = numpy.array(_digest(meta, arrays))
    with files.atomic_write(path, check=load) as f:     # never put an unreadable file in place
        numpy.savez(f, **members)
    return path


def load(path, config=None, defaults=None):
    """Read a checkpoint -> {"state": ..., "config": ...}. If ``config`` is
    given, every key in it must equal the stored one, else CheckpointError
    names the differences. ``defaults``: keys a checkpoint may lack (written
    before they existed) and the values they then stand for; they are compared
    whether or not ``config`` names them. Damaged or foreign files raise
    CheckpointError."""
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with numpy.load(path, allow_pickle=False) as z:
            meta = str(z["meta"])
            digest = str(z["sha256"])
            arrays = [z[f"a{i}"] for i in range(len(z.files) - 2)]
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as e:
        raise CheckpointError(f"{path} is not a readable npgan checkpoint (damaged or "
                              f"truncated?): {type(e).__name__}: {e}") from e
    if _digest(meta, arrays) != digest:
        raise CheckpointError(f"{path} is damaged: its content does not match its SHA-256")
    try:
        info = json.loads(meta)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path} is not an npgan checkpoint: its metadata is not JSON "
                              f"({e})") from e
    fmt = info.get("format") if isinstance(info, dict) else None
    if fmt != FORMAT:
        raise CheckpointError(f"{path} has format {fmt!r}, expected {FORMAT!r}")
    if not isinstance(info.get("config"), dict) or "state" not in info:
        raise CheckpointError(f"{path} is not a well-formed npgan checkpoint: its metadata "
                              "lacks a config dict or the state")
    try:
        state = _join(info["state"], arrays)
    except RecursionError as e:
        raise CheckpointError(f"{path} is not a well-formed npgan checkpoint: its state is "
                              "nested too deeply") from e
    except CheckpointError as e:
        raise CheckpointError(f"{path} is not a well-formed npgan checkpoint: {e}") from None
    if config is not None:
        defaults = _jsonable(defaults or {})
        stored, now = {**defaults, **info["config"]}, {**defaults, **_jsonable(config)}
        diff = {k: (stored.get(k), v) for k, v in now.items() if stored.get(k) != v}
        if diff:
            lines = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise CheckpointError(f"{path} was written by a different configuration ({lines}); "
                                  "use a new output directory or the same options")
    return {"state": state, "config": info["config"]}


def _jsonable(config):
    """The config as it reads back from JSON (tuples become lists, ...)."""
    return json.loads(json.dumps(config))
