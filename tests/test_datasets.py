import gzip
import hashlib
import os
import shutil

import numpy as np
import pytest

from npgan import datasets as D
from npgan.datasets import DatasetError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_MNIST = os.path.join(ROOT, "data", "mnist")
# Real Fashion-MNIST: the shared datasets folder beside the clone (CI: ../shared),
# or $NPGAN_DATA as set when the tests start (the fixture below hides it)
SHARED_ROOTS = [os.path.join(ROOT, os.pardir, "shared", "datasets")] + (
    [os.environ["NPGAN_DATA"]] if os.environ.get("NPGAN_DATA") else [])


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch, tmp_path):
    """No downloads, no user cache or NPGAN_DATA leaking in from outside."""
    monkeypatch.setenv("NPGAN_NO_DOWNLOAD", "1")
    monkeypatch.delenv("NPGAN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def idx_bytes(arr):
    arr = np.asarray(arr)
    code = {np.uint8: 8, np.int8: 9, np.int16: 11, np.int32: 12, np.float32: 13, np.float64: 14}
    return (bytes([0, 0, code[arr.dtype.type], arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
            + arr.astype(arr.dtype.newbyteorder(">")).tobytes())


def write(path, data, gz=True):
    path = str(path) + (".gz" if gz else "")
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if gz else data)
    return path


def fake_dataset(directory, n_train=7, n_test=3, gz=True, seed=0):
    """Four small MNIST-shaped files; returns {file: uncompressed bytes}."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        files[f"{part}-images-idx3-ubyte"] = idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        files[f"{part}-labels-idx1-ubyte"] = idx_bytes(rng.integers(0, 10, n, dtype=np.uint8))
    for name, data in files.items():
        write(os.path.join(directory, name), data, gz)
    return files


# ------------------------------------------------------------ IDX reader

@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path, gz, dtype):
    a = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    if dtype == np.uint8:
        a = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    p = write(tmp_path / "a-idx3", idx_bytes(a), gz)
    b = D.read_idx(p)
    assert b.shape == a.shape and b.dtype == a.dtype
    np.testing.assert_array_equal(a, b)


def test_write_idx_round_trip(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    D.write_idx(tmp_path / "x.gz", a)
    np.testing.assert_array_equal(D.read_idx(tmp_path / "x.gz"), a)
    assert open(tmp_path / "x.gz", "rb").read(2) == b"\x1f\x8b"


@pytest.mark.parametrize("gz", [True, False])
def test_bad_magic(tmp_path, gz):
    data = bytearray(idx_bytes(np.zeros((2, 3), np.uint8)))
    data[2] = 0x42
    p = write(tmp_path / "m", bytes(data), gz)
    with pytest.raises(DatasetError, match=r"not an IDX file.*magic") as e:
        D.read_idx(p)
    assert p in str(e.value)
    p = write(tmp_path / "m2", b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x05", gz)
    with pytest.raises(DatasetError, match="not an IDX"):
        D.read_idx(p)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated(tmp_path, gz):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    p = write(tmp_path / "t", data[:-10], gz)
    with pytest.raises(DatasetError, match=r"truncated.*\(4, 28, 28\)") as e:
        D.read_idx(p)
    assert p in str(e.value)
    p = write(tmp_path / "h", data[:9], gz)      # cut inside the dimensions
    with pytest.raises(DatasetError, match="truncated IDX header"):
        D.read_idx(p)
    p = write(tmp_path / "e", b"", gz)
    with pytest.raises(DatasetError, match="too short"):
        D.read_idx(p)


def test_trailing_bytes(tmp_path):
    p = write(tmp_path / "x", idx_bytes(np.zeros(5, np.uint8)) + b"junk")
    with pytest.raises(DatasetError, match="4 trailing bytes"):
        D.read_idx(p)


def test_wrong_dims(tmp_path):
    # header claims 10x10 but 5x5 of data follow
    data = bytes([0, 0, 8, 2]) + np.asarray([10, 10], ">u4").tobytes() + bytes(25)
    with pytest.raises(DatasetError, match=r"\(10, 10\)"):
        D.read_idx(write(tmp_path / "w", data))
    # a loader checks the number of dimensions: labels where images belong
    d = tmp_path / "ds"
    fake_dataset(d)
    write(d / "train-images-idx3-ubyte", idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: expected uint8 images"):
        D.load_mnist("train_full", data_dir=d, verify=False)
    # image and label counts disagree
    write(d / "train-images-idx3-ubyte", idx_bytes(np.zeros((6, 28, 28), np.uint8)))
    with pytest.raises(DatasetError, match="6 images.*7 labels"):
        D.load_mnist("train_full", data_dir=d, verify=False)


def test_bad_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.zeros((50, 50), np.uint8)))
    p = tmp_path / "cut.gz"
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="bad gzip") as e:
        D.read_idx(p)
    assert str(p) in str(e.value)
    p = tmp_path / "garbage.gz"
    p.write_bytes(b"\x1f\x8b" + b"\xff" * 40)
    with pytest.raises(DatasetError, match="bad gzip"):
        D.read_idx(p)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        D.read_idx(tmp_path / "nope")


# ------------------------------------------------------------ checksums and loaders

def test_md5_mismatch(tmp_path):
    files = fake_dataset(tmp_path / "mnist")
    with pytest.raises(DatasetError) as e:
        D.load_mnist("test", data_dir=tmp_path)
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "md5 mismatch" in msg
    assert D.DATASETS["mnist"]["t10k-images-idx3-ubyte"][0] in msg
    assert hashlib.md5(files["t10k-images-idx3-ubyte"]).hexdigest() in msg
    # explicit checksum check on read_idx
    data = files["t10k-labels-idx1-ubyte"]
    D.read_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", md5=hashlib.md5(data).hexdigest())


@pytest.mark.parametrize("gz", [True, False])
def test_loader_splits_and_dtypes(tmp_path, gz, monkeypatch):
    monkeypatch.setitem(D._SPLITS, "train", ("train", slice(0, 5)))
    monkeypatch.setitem(D._SPLITS, "valid", ("train", slice(5, None)))
    files = fake_dataset(tmp_path, gz=gz)
    raw = D.parse_idx(files["train-images-idx3-ubyte"])
    x, y = D.load_mnist("train", data_dir=tmp_path, verify=False)
    assert x.shape == (5, 784) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, raw[:5].reshape(5, -1) / np.float32(255))
    x, y = D.load_mnist("valid", data_dir=tmp_path, dtype="uint8", flatten=False, verify=False)
    assert x.shape == (2, 28, 28) and x.dtype == np.uint8 and x.flags.writeable
    np.testing.assert_array_equal(x, raw[5:])
    x, y = D.load_mnist("train_full", data_dir=tmp_path, verify=False)
    assert x.shape == (7, 784)
    x, y = D.load_mnist("test", data_dir=tmp_path, verify=False)
    assert x.shape == (3, 784) and 0 <= x.min() and x.max() <= 1
    with pytest.raises(ValueError, match="split"):
        D.load_mnist("validation", data_dir=tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        D.load_mnist("test", data_dir=tmp_path, dtype="float64")


# ------------------------------------------------------------ where the files come from

def test_search_order(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    fake_dataset(a / "mnist", n_test=3)          # <dir>/mnist/<file>
    fake_dataset(b, n_test=4)                    # <dir>/<file>
    monkeypatch.setenv("NPGAN_DATA", str(b))
    assert D.find_data_dir("mnist") == str(b)
    assert D.find_data_dir("mnist", data_dir=a) == str(a / "mnist")
    assert len(D.load_mnist("test", data_dir=a, verify=False)[0]) == 3
    assert len(D.load_mnist("test", verify=False)[0]) == 4
    # a data_dir without the files falls through to NPGAN_DATA
    assert D.find_data_dir("mnist", data_dir=tmp_path / "empty") == str(b)
    # NPGAN_DATA beats the user cache
    fake_dataset(tmp_path / "cache" / "npgan" / "mnist")
    assert D.find_data_dir("mnist") == str(b)
    monkeypatch.delenv("NPGAN_DATA")
    assert D.find_data_dir("mnist") == str(tmp_path / "cache" / "npgan" / "mnist")


def test_fallback_is_searched_last_before_a_download(tmp_path, monkeypatch):
    """An example's bundled copy (fallback=) serves only when data_dir, NPGAN_DATA and
    the cache lack the files, and is listed in the error when it lacks them too."""
    fb, env, cache = tmp_path / "bundled", tmp_path / "env", tmp_path / "cache" / "npgan" / "mnist"
    fake_dataset(fb, n_test=2)
    assert D.find_data_dir("mnist", fallback=fb) == str(fb)
    assert len(D.load_mnist("test", fallback=fb, verify=False)[0]) == 2
    fake_dataset(cache, n_test=3)
    assert D.find_data_dir("mnist", fallback=fb) == str(cache)
    fake_dataset(env, n_test=4)
    monkeypatch.setenv("NPGAN_DATA", str(env))
    assert len(D.load_mnist("test", fallback=fb, verify=False)[0]) == 4
    monkeypatch.delenv("NPGAN_DATA")
    shutil.rmtree(cache)
    with pytest.raises(DatasetError, match="elsewhere"):
        D.find_data_dir("mnist", data_dir=tmp_path / "nothing", fallback=tmp_path / "elsewhere")


def test_missing_everywhere_lists_dirs_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("NPGAN_DATA", str(tmp_path / "env"))
    fake_dataset(tmp_path / "partial" / "mnist")
    os.remove(tmp_path / "partial" / "mnist" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetError) as e:
        D.load_mnist(data_dir=tmp_path / "partial")
    msg = str(e.value)
    for d in (tmp_path / "partial" / "mnist", tmp_path / "partial", tmp_path / "env" / "mnist",
              tmp_path / "env", tmp_path / "cache" / "npgan" / "mnist"):
        assert str(d) in msg
    for f in D.FILES:
        assert f in msg


def test_download_fails_quietly_with_a_short_timeout(tmp_path, monkeypatch, capsys):
    """An unreachable mirror: DatasetError naming the URL, nothing on stderr,
    nothing left in the cache; each connection is given DOWNLOAD_TIMEOUT
    (how long that takes: benchmarks/bench_io.py)."""
    import urllib.request
    timeouts = []
    real_urlopen = urllib.request.urlopen

    def urlopen(url, timeout=None):
        timeouts.append(timeout)
        return real_urlopen(url, timeout=timeout)
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(D, "MIRRORS", {"mnist": ["http://127.0.0.1:9/"], "fashion-mnist": []})
    with pytest.raises(DatasetError, match=r"download from the original mirrors failed.*127\.0\.0\.1:9"):
        D.find_data_dir("mnist", download=True)
    assert timeouts and all(t == D.DOWNLOAD_TIMEOUT for t in timeouts)
    assert D.DOWNLOAD_TIMEOUT <= 5
    assert capsys.readouterr().err == ""
    cache = tmp_path / "cache" / "npgan" / "mnist"
    assert not cache.exists() or not any(cache.iterdir())


def test_download_writes_cache(tmp_path, monkeypatch):
    files = fake_dataset(tmp_path / "src")
    blobs = {f: (tmp_path / "src" / (f + ".gz")).read_bytes() for f in files}
    table = {f: (hashlib.md5(files[f]).hexdigest(), hashlib.md5(blobs[f]).hexdigest()) for f in files}
    monkeypatch.setitem(D.DATASETS, "mnist", table)
    monkeypatch.setattr(D, "MIRRORS", {"mnist": [(tmp_path / "src").as_uri() + "/"]})
    d = D.find_data_dir("mnist", download=True)
    assert d == str(tmp_path / "cache" / "npgan" / "mnist")
    x, y = D.load_mnist("test")
    assert x.shape == (3, 784)


def test_library_hardcodes_no_paths():
    src = open(D.__file__).read()
    assert "data/mnist" not in src and "shared" not in src


# ------------------------------------------------------------ the real files

@pytest.fixture(scope="module")
def mnist_dir():
    if not os.path.isdir(REPO_MNIST):
        pytest.skip("data/mnist not in this checkout")
    return REPO_MNIST


def test_real_mnist(mnist_dir):
    x, y = D.load_mnist("train_full", data_dir=mnist_dir)      # its time: benchmarks/bench_io.py
    assert x.shape == (60000, 784) and x.dtype == np.float32
    # README figures (float64 from the bytes): our pixels are float32 (p/255
    # rounded, <= 6e-8 relative) summed in float64: within 1e-8; 1e-6 on any CPU
    assert abs(x.mean(dtype=np.float64) - 0.1306604762738429) < 1e-6
    assert abs(x.std(dtype=np.float64) - 0.30810780385646264) < 1e-6
    np.testing.assert_array_equal(np.bincount(y, minlength=10),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    tr, _ = D.load_mnist("train", data_dir=mnist_dir)
    va, _ = D.load_mnist("valid", data_dir=mnist_dir)
    te, yt = D.load_mnist("test", data_dir=mnist_dir, dtype="uint8", flatten=False)
    assert tr.shape == (50000, 784) and va.shape == (10000, 784)
    np.testing.assert_array_equal(va, x[50000:])
    assert te.shape == (10000, 28, 28) and te.dtype == np.uint8 and yt.shape == (10000,)


# ------------------------------------------------------------ Fashion-MNIST

def _md5_table(files):
    """DATASETS-style table for fake files: (md5 of the bytes, unused .gz md5)."""
    return {f: (hashlib.md5(b).hexdigest(), "-") for f, b in files.items()}


def test_fashion_mnist_loads_its_own_files_verified(tmp_path, monkeypatch):
    """A data dir holding both datasets: each loader reads its own subfolder
    (<dir>/fashion-mnist), checks its own md5 table, labels int64 0..9,
    images /255; the paper's split sizes (scaled down) apply to both."""
    monkeypatch.setitem(D._SPLITS, "train", ("train", slice(0, 6)))
    monkeypatch.setitem(D._SPLITS, "valid", ("train", slice(6, None)))
    mn = fake_dataset(tmp_path / "mnist", n_train=8, n_test=3, seed=1)
    fa = fake_dataset(tmp_path / "fashion-mnist", n_train=9, n_test=4, seed=2)
    monkeypatch.setitem(D.DATASETS, "mnist", _md5_table(mn))
    monkeypatch.setitem(D.DATASETS, "fashion-mnist", _md5_table(fa))
    raw = D.parse_idx(fa["train-images-idx3-ubyte"])
    labels = D.parse_idx(fa["train-labels-idx1-ubyte"])
    x, y = D.load_fashion_mnist("train", data_dir=tmp_path)
    assert x.shape == (6, 784) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, raw[:6].reshape(6, 784) / np.float32(255))
    np.testing.assert_array_equal(y, labels[:6])
    x, y = D.load_fashion_mnist("valid", data_dir=tmp_path, dtype="uint8", flatten=False)
    assert x.shape == (3, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, raw[6:])
    np.testing.assert_array_equal(y, labels[6:])
    assert len(D.load_fashion_mnist("train_full", data_dir=tmp_path)[0]) == 9
    xt, yt = D.load_fashion_mnist("test", data_dir=tmp_path)
    np.testing.assert_array_equal(yt, D.parse_idx(fa["t10k-labels-idx1-ubyte"]))
    assert xt.shape == (4, 784)
    assert len(D.load_mnist("test", data_dir=tmp_path)[0]) == 3        # MNIST: its own files
    assert D.load("fashion-mnist", "test", data_dir=tmp_path)[0].shape == (4, 784)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load("fashion", "test", data_dir=tmp_path)


def test_fashion_mnist_checksums_and_missing_files(tmp_path, monkeypatch):
    """Fashion-MNIST's md5 table is checked (MNIST's files are not accepted
    in its place); missing files: the message names the dataset, the
    directories searched and the files."""
    fake_dataset(tmp_path / "fashion-mnist")
    with pytest.raises(DatasetError, match="md5 mismatch") as e:
        D.load_fashion_mnist("test", data_dir=tmp_path)
    assert D.DATASETS["fashion-mnist"]["t10k-images-idx3-ubyte"][0] in str(e.value)
    assert "fashion-mnist" in str(e.value)
    assert D.load_fashion_mnist("test", data_dir=tmp_path, verify=False)[0].shape == (3, 784)
    # the real tables: Fashion-MNIST's differ from MNIST's in every file
    for f in D.FILES:
        assert D.DATASETS["fashion-mnist"][f][0] != D.DATASETS["mnist"][f][0]
    only_mnist = tmp_path / "other"
    fake_dataset(only_mnist / "mnist")
    with pytest.raises(DatasetError, match="dataset 'fashion-mnist' not found") as e:
        D.load_fashion_mnist("test", data_dir=only_mnist)
    msg = str(e.value)
    assert str(only_mnist / "fashion-mnist") in msg and all(f in msg for f in D.FILES)
    (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bjunk")
    with pytest.raises(DatasetError, match="bad gzip"):
        D.load_fashion_mnist("test", data_dir=tmp_path, verify=False)


@pytest.fixture(scope="module")
def fashion_dir():
    for root in SHARED_ROOTS:
        d = os.path.join(root, "fashion-mnist")
        if all(D._file_in(d, f) for f in D.FILES):
            return os.path.abspath(d)
    pytest.skip("real Fashion-MNIST not found (../shared/datasets/fashion-mnist or $NPGAN_DATA)")


def test_real_fashion_mnist(fashion_dir, monkeypatch):
    """The real files, md5-verified: 60,000 + 10,000 28x28 images, 6,000
    (train) and 1,000 (test) of each of the 10 classes; pixels /255 have mean
    0.2860 and s.d. 0.3530 (shared/datasets/README.md, 4 decimals)."""
    x, y = D.load_fashion_mnist("train_full", data_dir=fashion_dir)
    assert x.shape == (60000, 784) and x.dtype == np.float32 and y.dtype == np.int64
    assert abs(x.mean(dtype=np.float64) - 0.2860) < 5e-5
    assert abs(x.std(dtype=np.float64) - 0.3530) < 5e-5
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [6000] * 10)
    tr, ytr = D.load_fashion_mnist("train", data_dir=fashion_dir)
    va, yva = D.load_fashion_mnist("valid", data_dir=fashion_dir)
    assert tr.shape == (50000, 784) and va.shape == (10000, 784)
    np.testing.assert_array_equal(tr, x[:50000])
    np.testing.assert_array_equal(yva, y[50000:])
    te, yt = D.load_fashion_mnist("test", data_dir=fashion_dir, dtype="uint8", flatten=False)
    assert te.shape == (10000, 28, 28) and te.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), [1000] * 10)
    # found through NPGAN_DATA as <dir>/fashion-mnist, as the README says
    monkeypatch.setenv("NPGAN_DATA", os.path.dirname(fashion_dir))
    assert D.find_data_dir("fashion-mnist") == fashion_dir
    np.testing.assert_array_equal(D.load_fashion_mnist("test", dtype="uint8", flatten=False)[0], te)


def test_write_idx_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    # the IDX writer (and the download) go through npgan.files.atomic_write
    import errno
    from npgan import datasets as ds
    path = tmp_path / "x-idx1-ubyte.gz"
    ds.write_idx(path, np.arange(5, dtype=np.uint8))
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        ds.write_idx(path, np.arange(7, dtype=np.uint8))
    monkeypatch.undo()
    np.testing.assert_array_equal(ds.read_idx(str(path)), np.arange(5))
    assert os.listdir(tmp_path) == [path.name]
