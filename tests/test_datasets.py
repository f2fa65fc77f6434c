import gzip
import hashlib
import os

import numpy as np
import pytest

from npgan import datasets as D
from npgan.datasets import DatasetError

REPO_MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "data", "mnist")


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


def fake_dataset(directory, n_train=7, n_test=3, gz=True):
    """Four small MNIST-shaped files; returns {file: uncompressed bytes}."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
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


def test_download_fails_fast_and_quietly(tmp_path, monkeypatch, capsys):
    import time
    monkeypatch.setattr(D, "MIRRORS", {"mnist": ["http://127.0.0.1:9/"], "fashion-mnist": []})
    t = time.perf_counter()
    with pytest.raises(DatasetError, match="download from the original mirrors failed"):
        D.find_data_dir("mnist", download=True)
    assert time.perf_counter() - t < 5
    assert capsys.readouterr().err == ""


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
    import time
    t = time.perf_counter()
    x, y = D.load_mnist("train_full", data_dir=mnist_dir)
    assert time.perf_counter() - t < 5          # ~0.7 s here; budget 2 s, slack for load
    assert x.shape == (60000, 784) and x.dtype == np.float32
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
