"""Checkpoints and the crash-safe file layer under them (npgan.files): the
digest guards every byte, a failed write leaves the old file and no temporary
one, a killed writer's temporary files go at the next start, and the
run-directory lock refuses a second run but not a dead one."""
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from npgan import checkpoint, files
from npgan.checkpoint import CheckpointError

needs_lock = pytest.mark.skipif(files.fcntl is None and files.msvcrt is None, reason="no file locking here")


def small_state():
    return {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(3), "step": 5,
            "history": [{"epoch": 1, "loss": 0.5}]}


def members(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def resave(path, m):
    """Rewrite the checkpoint with these members: a valid zip (fresh CRCs)."""
    with open(path, "wb") as f:
        np.savez(f, **m)


def dead_pid():
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                       text=True, check=True)
    return int(p.stdout)


def temps(d):
    return sorted(os.path.relpath(os.path.join(r, n), d) for r, _, ns in os.walk(d) for n in ns
                  if ".tmp-" in n)


# -- the digest ------------------------------------------------------------------------

def test_digest_catches_changed_array_bytes(tmp_path):
    """One float changed, zip valid, old sha256 kept: the digest must refuse it
    (zip's CRC cannot, it was recomputed)."""
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, small_state(), {"seed": 1})
    m = members(path)
    name = next(k for k in m if k.startswith("a") and m[k].dtype == np.float32)
    m[name] = m[name].copy()
    m[name].flat[5] += 1
    resave(path, m)
    assert members(path)[name].flat[5] == 6                 # readable as a zip: only the digest can tell
    with pytest.raises(CheckpointError, match="SHA-256"):
        checkpoint.load(path)


@pytest.mark.parametrize("change", ["shape", "dtype"])
def test_digest_catches_same_bytes_other_shape_or_dtype(tmp_path, change):
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, small_state(), {"seed": 1})
    m = members(path)
    name = next(k for k in m if k.startswith("a") and m[k].dtype == np.float32)
    m[name] = m[name].reshape(4, 3) if change == "shape" else m[name].view(np.int32)
    resave(path, m)
    with pytest.raises(CheckpointError, match="SHA-256"):
        checkpoint.load(path)


def test_digest_catches_changed_meta(tmp_path):
    """The JSON part (config, history, numbers) is covered too."""
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, small_state(), {"seed": 1})
    m = members(path)
    meta = json.loads(str(m["meta"]))
    meta["state"]["__dict__"] = [[k, 6 if k == "step" else v] for k, v in meta["state"]["__dict__"]]
    m["meta"] = np.array(json.dumps(meta))
    resave(path, m)
    with pytest.raises(CheckpointError, match="SHA-256"):
        checkpoint.load(path)
    m["meta"] = np.array(str(m["meta"]).replace('"seed": 1', '"seed": 2'))
    resave(path, m)
    with pytest.raises(CheckpointError, match="SHA-256"):
        checkpoint.load(path)


# -- atomic writes -----------------------------------------------------------------------

def disk_full_after(nbytes):
    """A numpy.savez that writes ``nbytes`` of a file, then fails like a full disk."""
    def savez(f, *a, **kw):
        f.write(b"PK\x03\x04" + b"\0" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")
    return savez


def test_checkpoint_save_on_full_disk_keeps_the_old_one(tmp_path, monkeypatch):
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, small_state(), {"seed": 1})
    new = small_state()
    new["step"] = 6
    monkeypatch.setattr(np, "savez", disk_full_after(1000))
    with pytest.raises(OSError, match="No space"):
        checkpoint.save(path, new, {"seed": 1})
    monkeypatch.undo()
    assert checkpoint.load(path)["state"]["step"] == 5
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "table.md"
    files.write_text(path, "old\n")
    with pytest.raises(RuntimeError, match="midway"):
        with files.atomic_write(path, "w") as f:
            f.write("new, half wri")
            raise RuntimeError("midway")
    def refuse(tmp):
        assert open(tmp).read() == "new"
        raise ValueError("refused")
    with pytest.raises(ValueError, match="refused"):
        with files.atomic_write(path, "w", check=refuse) as f:
            f.write("new")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["table.md"]
    files.write_text(path, "new\n")
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["table.md"]


def test_stale_temps_of_dead_writers_removed_at_start(tmp_path):
    """lock_dir (a run's start) removes the temporary files of dead writers,
    in subdirectories too, and keeps those of live ones; a write of a file
    removes its own dead temporaries."""
    d = tmp_path / "run"
    (d / "samples").mkdir(parents=True)
    dead = dead_pid()
    stale = [f".checkpoint.npz.tmp-{dead}", f".metrics.jsonl.tmp-{dead}-3", f"samples/.G_0001.png.tmp-{dead}-0"]
    live = [f".checkpoint.npz.tmp-{os.getpid()}-99", f".best_G.npz.tmp-{os.getppid()}-0"]
    mine = ["notes.tmp-1"]                          # not a hidden npgan temporary: kept
    for name in stale + live + mine:
        (d / name).write_bytes(b"x" * 10)
    with files.lock_dir(str(d)):
        assert temps(str(d)) == sorted(live + mine)
    os.remove(d / live[0])
    os.remove(d / mine[0])
    (d / f".table.csv.tmp-{dead}-1").write_text("partial")
    files.write_text(d / "table.csv", "a,b\n")
    assert temps(str(d)) == [live[1]]


# -- the run-directory lock ----------------------------------------------------------------

HOLD = """
import sys, time
from npgan import files
with files.lock_dir(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


@needs_lock
def test_lock_refuses_a_second_run_and_dies_with_a_killed_one(tmp_path):
    d = str(tmp_path / "run")
    p = subprocess.Popen([sys.executable, "-c", HOLD, d], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(files.DirectoryLocked, match=f"PID {p.pid} "):
            with files.lock_dir(d):
                pass
    finally:
        p.kill()                                    # SIGKILL: no cleanup code runs
        p.wait()
    with files.lock_dir(d):                         # free: no stale lock
        pass


@needs_lock
def test_lock_is_exclusive_within_a_process_and_released_on_exit(tmp_path):
    d = str(tmp_path / "run")
    with files.lock_dir(d):
        with pytest.raises(files.DirectoryLocked, match=f"PID {os.getpid()} "):
            with files.lock_dir(d):
                pass
    with pytest.raises(KeyError):
        with files.lock_dir(d):
            raise KeyError
    with files.lock_dir(d):
        pass


# -- no pickle anywhere ------------------------------------------------------------------

class _Boom:
    """Unpickling this runs code: a loader that unpickles would raise here."""
    def __reduce__(self):
        return (os.system, ("exit 3",))


def test_a_pickled_member_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "evil.npz"
    checkpoint.save(path, small_state())
    m = members(path)
    m["a0"] = np.array([_Boom()], dtype=object)          # pickled by np.savez
    resave(path, m)
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd))
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    assert calls == []                                   # never unpickled


def test_no_loader_in_the_package_or_examples_allows_pickle():
    # numpy.load refuses object arrays unless allow_pickle=True (its default since 1.16.3)
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    seen = 0
    for d in ("npgan", "examples"):
        for r, _, names in os.walk(os.path.join(root, d)):
            for n in (n for n in names if n.endswith(".py")):
                src = open(os.path.join(r, n), encoding="utf-8").read()
                seen += 1
                assert not re.search(r"^\s*(import|from)\s+(pickle|dill|cloudpickle)\b", src, re.M), n
                assert "allow_pickle=True" not in src, n
    assert seen > 20


# -- config, damage and structure (moved from tests/test_train.py) ---------------------------
def test_checkpoint_refuses_other_config_and_damage(tmp_path):
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, small_state(), {"seed": 0, "k": 1})
    with pytest.raises(checkpoint.CheckpointError, match="k: checkpoint 1 vs now 2"):
        checkpoint.load(path, {"seed": 0, "k": 2})
    raw = open(path, "rb").read()
    bad = str(tmp_path / "bad.npz")
    with open(bad, "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="damaged|truncated"):
        checkpoint.load(bad)
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    with open(bad, "wb") as f:
        f.write(bytes(flipped))
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(bad)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        checkpoint.load(str(tmp_path / "missing.npz"))


def test_failed_save_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, small_state(), {"seed": 0})
    good = open(path, "rb").read()

    def broken_savez(f, **members):
        f.write(b"garbage")
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.save(path, small_state(), {"seed": 0})
    assert open(path, "rb").read() == good
    assert os.listdir(tmp_path) == ["ck.npz"]        # no temporary left behind


def rewrite(path, out, edit):
    """Copy checkpoint ``path`` to ``out`` with its metadata edited and the SHA-256
    recomputed: a right digest over a wrong structure."""
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    arrays = [members[f"a{i}"] for i in range(len(members) - 2)]
    meta = edit(json.loads(str(members["meta"])))
    meta = meta if isinstance(meta, str) else json.dumps(meta)
    members["meta"], members["sha256"] = np.array(meta), np.array(checkpoint._digest(meta, arrays))
    with open(out, "wb") as f:
        np.savez(f, **members)
    return out


def _first_array_node(tree):
    if isinstance(tree, dict):
        if "__array__" in tree:
            return tree
        tree = [v for _, v in tree["__dict__"]]
    for v in tree if isinstance(tree, list) else ():
        found = _first_array_node(v)
        if found is not None:
            return found
    return None


def _set_index(i):
    def edit(info):
        _first_array_node(info["state"])["__array__"] = i
        return info
    return edit


def _break_dict(info):
    info["state"]["__dict__"][0][1] = {"__dict__": "G"}
    return info


@pytest.mark.parametrize("edit,match", [
    (_set_index(10_000), "array index 10000"), (_set_index(-1), "array index -1"),
    (_set_index("0"), "array index '0'"), (_break_dict, "malformed node"),
    (lambda info: "{not json", "not JSON"), (lambda info: [1, 2], "format None"),
    (lambda info: {k: v for k, v in info.items() if k != "state"}, "lacks a config dict or the state")])
def test_checkpoint_with_right_digest_and_wrong_structure_is_refused(tmp_path, edit, match):
    path = checkpoint.save(str(tmp_path / "ck.npz"), small_state(), {"seed": 0})
    bad = rewrite(path, str(tmp_path / "bad.npz"), edit)
    with pytest.raises(checkpoint.CheckpointError, match=match):
        checkpoint.load(bad)




# -- what comes back ---------------------------------------------------------------------
def test_round_trip_returns_every_value_with_its_dtype_and_shape(tmp_path):
    """Nested dicts and lists of arrays (any dtype and shape, 0-d included), numbers,
    None, bools, strings and int dict keys come back equal; tuples as lists (JSON);
    arrays bit for bit with their dtype; numpy scalars as Python numbers."""
    rng = np.random.default_rng(0)
    state = {"f32": rng.standard_normal((2, 3)).astype(np.float32), "f64": np.array(np.pi),
             "ints": np.arange(5, dtype=np.int64)[::-1], "u8": np.array([[1, 255]], np.uint8),
             "nested": {"list": [np.zeros(0, np.float32), {"deeper": np.ones((1, 1, 2))}],
                        7: "seven", "none": None, "flag": True},
             "tuple": (1, 2.5), "scalar": np.float32(0.25), "rng": rng.bit_generator.state}
    path = checkpoint.save(str(tmp_path / "ck.npz"), state, {"seed": 3, "ema": (0.9,)})
    back = checkpoint.load(path, {"seed": 3, "ema": (0.9,)})
    assert back["config"] == {"seed": 3, "ema": [0.9]}
    s = back["state"]
    for k in ("f32", "f64", "ints", "u8"):
        assert s[k].dtype == state[k].dtype and s[k].shape == state[k].shape, k
        np.testing.assert_array_equal(s[k], state[k])
    assert s["nested"]["list"][0].shape == (0,) and s["nested"]["list"][0].dtype == np.float32
    np.testing.assert_array_equal(s["nested"]["list"][1]["deeper"], np.ones((1, 1, 2)))
    assert s["nested"][7] == "seven" and s["nested"]["none"] is None and s["nested"]["flag"] is True
    assert s["tuple"] == [1, 2.5] and s["scalar"] == 0.25 and type(s["scalar"]) is float
    fresh = np.random.default_rng(1)
    fresh.bit_generator.state = s["rng"]
    np.testing.assert_array_equal(fresh.random(4), rng.random(4))        # the same stream goes on


def test_config_mismatch_names_every_differing_key(tmp_path):
    path = checkpoint.save(str(tmp_path / "ck.npz"), small_state(), {"seed": 0, "k": 1, "lr": 0.1})
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path, {"seed": 1, "k": 1, "lr": 0.2, "new": "x"})
    msg = str(e.value)
    assert "seed: checkpoint 0 vs now 1" in msg and "lr: checkpoint 0.1 vs now 0.2" in msg
    assert "new: checkpoint None vs now 'x'" in msg and "k:" not in msg
    assert checkpoint.load(path, {"k": 1})["state"]["step"] == 5                 # a subset is checked


def test_files_sha256_matches_hashlib_across_chunks(tmp_path):
    """files.sha256 reads in 1 MiB chunks: a file of 2.5 MiB spans three."""
    import hashlib
    from npgan import files
    data = np.random.default_rng(0).integers(0, 256, size=(5 << 19), dtype=np.uint8).tobytes()
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert files.sha256(p) == hashlib.sha256(data).hexdigest()
    p.write_bytes(data[:-1])
    assert files.sha256(p) != hashlib.sha256(data).hexdigest()
