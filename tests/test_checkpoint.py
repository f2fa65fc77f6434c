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


def test_classifier_weights_written_atomically(tmp_path, monkeypatch):
    from npgan import classifier
    model = classifier.MNISTClassifier(rng=np.random.default_rng(0))
    path = str(tmp_path / "w.npz")
    md5 = classifier.save_weights(model, path)
    def fail(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np.lib.format, "write_array", fail)
    with pytest.raises(OSError):
        classifier.save_weights(model, path)
    assert classifier.file_md5(path) == md5 and os.listdir(tmp_path) == ["w.npz"]


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
