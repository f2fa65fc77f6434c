"""MNIST and Fashion-MNIST from their IDX files (plain NumPy, host memory).

Files are the original distributions' ``<name>-idx?-ubyte[.gz]``. They are looked
for, in order, in: the ``data_dir`` argument, ``$NPGAN_DATA`` and the per-user
cache (``$XDG_CACHE_HOME/npgan`` or ``~/.cache/npgan``), each as
``<dir>/<dataset>/<file>`` or ``<dir>/<file>``; then a download from the
original mirrors into the cache is tried (short timeout, md5-checked; set
``NPGAN_NO_DOWNLOAD=1`` to skip it). Checksums are md5s of the *uncompressed*
bytes. Every problem with a file raises :class:`DatasetError` naming the file.

The GAN paper's split: ``train`` = train[:50000], ``valid`` = train[50000:],
``test`` = the 10,000 t10k images; ``train_full`` = all 60,000.
"""
import gzip
import hashlib
import os
import sys
import urllib.request
import zlib

import numpy

from . import files, settings

__all__ = ["DatasetError", "read_idx", "find_data_dir", "load_mnist",
           "load_fashion_mnist", "load", "DATASETS"]


class DatasetError(ValueError):
    """A data file is missing, truncated, corrupt or fails its checksum."""


IMAGES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
LABELS = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}
FILES = (IMAGES["train"], LABELS["train"], IMAGES["test"], LABELS["test"])

#: per dataset: file -> (md5 of the uncompressed bytes, md5 of the original .gz)
DATASETS = {
    "mnist": {
        "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", "d53e105ee54ea40749a09fcbcd1e9432"),
        "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", "9fb629c4189551a2d022fa330f9573f3"),
        "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", "ec29112dd5afa0611ce80d1b7f02629c"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train-labels-idx1-ubyte": ("9018921c3c673c538a1fc5bad174d6f9", "25c81989df183df01b3e8a0aad5dffbe"),
        "t10k-images-idx3-ubyte": ("8181f5470baa50b63fa0f6fddb340f0a", "bef4ecab320f06d8554ea6380940ec79"),
        "t10k-labels-idx1-ubyte": ("15d484375f8d13e6eb1aabb0c3f46965", "bb300cfdad3c16e7a12a480ee83cd310"),
    },
}

MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
DOWNLOAD_TIMEOUT = 3.0   #: seconds per connection attempt (at most 2 mirrors are tried)

# IDX type code -> big-endian dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ---------------------------------------------------------------- IDX files

def _read_bytes(path):
    """The file's uncompressed bytes (gzip detected by its magic bytes)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from e
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: bad gzip data ({e})") from e


def parse_idx(data, name="<bytes>"):
    """IDX bytes -> array (native byte order; uint8 stays uint8, read-only view).

    Checks the magic ``00 00 <type> <ndim>``, the dimensions and that the data
    is exactly ``prod(dims) * itemsize`` bytes long."""
    if len(data) < 4:
        raise DatasetError(f"{name}: file too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{name}: not an IDX file (magic bytes {data[:4].hex()}, "
                           "expected 0000 <type 08/09/0b/0c/0d/0e> <ndim>)")
    dtype, ndim = numpy.dtype(_IDX_DTYPES[data[2]]), data[3]
    if ndim == 0:
        raise DatasetError(f"{name}: IDX header has 0 dimensions")
    head = 4 + 4 * ndim
    if len(data) < head:
        raise DatasetError(f"{name}: truncated IDX header ({len(data)} bytes, need {head})")
    dims = tuple(int(d) for d in numpy.frombuffer(data, ">u4", ndim, 4))
    need = int(numpy.prod(dims, dtype=numpy.int64)) * dtype.itemsize
    got = len(data) - head
    if got < need:
        raise DatasetError(f"{name}: truncated: header says shape {dims} "
                           f"({need} data bytes) but only {got} follow")
    if got > need:
        raise DatasetError(f"{name}: {got - need} trailing bytes after the "
                           f"{need} data bytes of shape {dims}")
    arr = numpy.frombuffer(data, dtype, offset=head).reshape(dims)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def read_idx(path, md5=None):
    """Read an IDX file (raw or gzip) -> NumPy array of its shape.

    ``md5``: expected md5 hex digest of the uncompressed bytes, or None."""
    path = os.fspath(path)
    data = _read_bytes(path)
    if md5 is not None:
        got = hashlib.md5(data).hexdigest()
        if got != md5:
            raise DatasetError(f"{path}: md5 mismatch of the uncompressed bytes: "
                               f"expected {md5}, got {got}")
    return parse_idx(data, path)


def write_idx(path, array, compress=None):
    """Write ``array`` as an IDX file (gzip if ``compress`` or path ends .gz)."""
    array = numpy.asarray(array)
    codes = {numpy.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    data = (bytes([0, 0, code, array.ndim])
            + numpy.asarray(array.shape, ">u4").tobytes()
            + numpy.ascontiguousarray(array, _IDX_DTYPES[code]).tobytes())
    path = os.fspath(path)
    if compress or (compress is None and path.endswith(".gz")):
        data = gzip.compress(data)
    with files.atomic_write(path) as f:
        f.write(data)


# ---------------------------------------------------------------- locations

def cache_dir():
    """The per-user cache: ``$XDG_CACHE_HOME/npgan`` or ``~/.cache/npgan``."""
    base = settings.data_environment()["cache_home"] or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "npgan")


def _file_in(directory, fname):
    """Path of ``fname`` (.gz or raw) inside ``directory``, or None."""
    for cand in (fname + ".gz", fname):
        p = os.path.join(directory, cand)
        if os.path.isfile(p):
            return p
    return None


def _candidates(name, data_dir=None, fallback=None):
    """Directories to search, in order (duplicates removed)."""
    roots = []
    if data_dir is not None:
        roots.append(os.fspath(data_dir))
    env_dir = settings.data_environment()["data"]
    if env_dir:
        roots.append(env_dir)
    roots.append(cache_dir())
    if fallback is not None:
        roots.append(os.fspath(fallback))
    out = []
    for r in roots:
        for d in (os.path.join(r, name), r):
            d = os.path.abspath(os.path.expanduser(d))
            if d not in out:
                out.append(d)
    return out


def _check_name(name):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: use one of {sorted(DATASETS)}")


def find_data_dir(name="mnist", data_dir=None, download=None, fallback=None):
    """The directory holding all four files of dataset ``name``.

    Search order: ``data_dir``, ``$NPGAN_DATA``, the user cache, ``fallback``
    (a copy that ships with the calling script), each as
    ``<dir>/<name>`` then ``<dir>``; then a download into
    ``<cache>/<name>`` (``download=None`` means unless ``NPGAN_NO_DOWNLOAD``
    is set). Raises DatasetError listing every directory searched."""
    _check_name(name)
    searched = _candidates(name, data_dir, fallback)
    for d in searched:
        if all(_file_in(d, f) for f in FILES):
            return d
    if download is None:
        download = settings.data_environment()["download"]
    errors = []
    if download:
        target = os.path.join(cache_dir(), name)
        errors = _download(name, target)
        if not errors:
            return target
    lines = [f"dataset {name!r} not found. Searched (file.gz or raw file):"]
    lines += [f"  {d}" for d in searched]
    lines.append("expected files: " + ", ".join(FILES))
    if errors:
        lines.append("download from the original mirrors failed: " + "; ".join(errors[:3]))
    lines.append("Set NPGAN_DATA or pass data_dir to point at a directory holding them.")
    raise DatasetError("\n".join(lines))


def _download(name, target):
    """Fetch the four .gz files into ``target``; returns a list of errors."""
    errors = []
    for fname in FILES:
        if _file_in(target, fname):
            continue
        gz_md5 = DATASETS[name][fname][1]
        for base in MIRRORS[name]:
            url = base + fname + ".gz"
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as r:
                    blob = r.read()
                if hashlib.md5(blob).hexdigest() != gz_md5:
                    raise DatasetError(f"md5 of download != {gz_md5}")
                os.makedirs(target, exist_ok=True)
                with files.atomic_write(os.path.join(target, fname + ".gz")) as f:
                    f.write(blob)
                print(f"npgan: downloaded {url}", file=sys.stderr)
                break
            except Exception as e:  # offline, HTTP error, bad md5, read-only cache
                errors.append(f"{url}: {e}")
        else:
            return errors or ["no mirror"]
    return []


# ---------------------------------------------------------------- loaders

_SPLITS = {"train": ("train", slice(0, 50000)), "valid": ("train", slice(50000, None)),
           "test": ("test", slice(None)), "train_full": ("train", slice(None))}


def load(name, split="train", data_dir=None, dtype="float32", flatten=True, verify=True,
         fallback=None):
    """``(images, labels)`` of dataset ``name`` ("mnist" or "fashion-mnist"),
    found by :func:`find_data_dir` (``data_dir``, ``$NPGAN_DATA``, the cache,
    ``fallback``, a download).

    images: float32 in [0, 1] (pixels / 255) or uint8; shape (N, 784) if
    ``flatten`` else (N, 28, 28). labels: int64, shape (N,). ``verify`` checks
    the md5 of each file's uncompressed bytes."""
    _check_name(name)
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {list(_SPLITS)}")
    if dtype not in ("float32", "uint8", numpy.float32, numpy.uint8):
        raise ValueError(f"dtype must be 'float32' or 'uint8', not {dtype!r}")
    part, rows = _SPLITS[split]
    d = find_data_dir(name, data_dir, fallback=fallback)
    md5s = DATASETS[name]
    img_path = _file_in(d, IMAGES[part])
    lab_path = _file_in(d, LABELS[part])
    images = read_idx(img_path, md5s[IMAGES[part]][0] if verify else None)
    labels = read_idx(lab_path, md5s[LABELS[part]][0] if verify else None)
    if images.ndim != 3 or images.dtype != numpy.uint8:
        raise DatasetError(f"{img_path}: expected uint8 images of shape (N, rows, cols), "
                           f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != numpy.uint8:
        raise DatasetError(f"{lab_path}: expected uint8 labels of shape (N,), "
                           f"got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{img_path} has {len(images)} images but {lab_path} "
                           f"has {len(labels)} labels")
    images, labels = images[rows], labels[rows].astype(numpy.int64)
    if flatten:
        images = images.reshape(len(images), -1)
    if numpy.dtype(dtype) == numpy.uint8:
        return images.copy(), labels
    return numpy.divide(images, numpy.float32(255), dtype=numpy.float32), labels


def load_mnist(split="train", data_dir=None, dtype="float32", flatten=True, verify=True,
               fallback=None):
    """MNIST ``(images, labels)``; see :func:`load`. Splits: train (50k),
    valid (10k), test (10k), train_full (60k)."""
    return load("mnist", split, data_dir, dtype, flatten, verify, fallback)


def load_fashion_mnist(split="train", data_dir=None, dtype="float32", flatten=True, verify=True):
    """Fashion-MNIST ``(images, labels)``; see :func:`load`."""
    return load("fashion-mnist", split, data_dir, dtype, flatten, verify)
