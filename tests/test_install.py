"""npgan installs where its users install: from the sdist, in a fresh virtual
environment, with no C compiler (or no Cython) at build time and no SciPy at
run time. The extensions are then skipped with one warning line, the package
runs on its NumPy path, and ``npgan._kernels.available()`` says so.

These build from this checkout with the running environment's setuptools
(no build isolation, no index: nothing is downloaded) and install into a
venv that sees NumPy only. They run once in CI: skipped in the
``NPGAN_NO_KERNELS=1`` run, which would test the same thing again.
"""
import glob
import importlib.metadata
import json
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from npgan import _kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "npgan", "_kernels")
KERNEL_NAMES = sorted(os.path.splitext(f)[0] for f in os.listdir(KERNELS) if f.endswith(".pyx"))
WARNING = "WARNING: npgan: compiled kernels not built"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_kernels.disabled(), reason="install checks run once, in the run with kernels"),
]


def _setuptools_or_skip():
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("setuptools not installed (pip install -e '.[test]')")
    if int(version.split(".")[0]) < 77:
        pytest.skip(f"setuptools {version} < 77, which pyproject.toml needs (pip install -e '.[test]')")


def _run(cmd, env=None, cwd=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def _clean_env(**extra):
    """This environment without the npgan switches that would change what is tested."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NPGAN_NO_KERNELS", "NPGAN_NO_BUILD", "NPGAN_REQUIRE_KERNELS", "PYTHONPATH")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """The sdist of this checkout, built by setuptools' PEP 517 backend (what
    ``python -m build --sdist`` calls)."""
    _setuptools_or_skip()
    out = tmp_path_factory.mktemp("sdist")
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    _run([sys.executable, "-c", code, str(out)], env=_clean_env(), cwd=ROOT)
    (path,) = glob.glob(str(out / "npgan-*.tar.gz"))
    return path


def _build_wheel(sdist, tmp, env):
    """A wheel from the unpacked sdist by setuptools' backend (what ``python -m
    build --no-isolation`` and pip call; pip itself adds seconds of
    subprocesses here), and everything the build printed."""
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "src", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (src,) = glob.glob(str(tmp / "src" / "npgan-*"))
    code = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
    log = _run([sys.executable, "-c", code, str(tmp / "wheel")], env=env, cwd=src)
    (wheel,) = glob.glob(str(tmp / "wheel" / "npgan-*.whl"))
    return wheel, log


def _one_warning(log, reason):
    lines = [line for line in log.splitlines() if WARNING in line]
    assert len(lines) == 1, f"expected the warning once, got {len(lines)}:\n" + "\n".join(lines)
    assert reason in lines[0], lines[0]
    for name in KERNEL_NAMES:
        assert name in lines[0], lines[0]


def _no_extensions(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd"))], names
    assert "npgan/data/mnist_classifier.npz" in names
    return names


def test_sdist_holds_the_sources_and_data_and_no_build_products(sdist):
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    want = {"setup.py", "pyproject.toml", "README.md", "npgan/__init__.py",
            "npgan/data/mnist_classifier.npz", "npgan/data/mnist_classifier.txt"}
    want |= {os.path.relpath(p, ROOT).replace(os.sep, "/") for ext in ("*.pyx", "*.pxd", "*.h")
             for p in glob.glob(os.path.join(KERNELS, ext))}
    assert not want - names, f"missing from the sdist: {sorted(want - names)}"
    built = [n for n in names if n.endswith((".c", ".so", ".pyd", ".pyc"))]
    assert not built, f"build products in the sdist: {built}"


TRAIN_STEP = r"""
import json, math, os, sys
try:
    import scipy
except ImportError:
    pass
else:
    sys.exit(f"scipy is importable in the fresh venv: {scipy.__file__}")
import numpy as np
import npgan
from npgan import _kernels, models, train
assert os.path.realpath(npgan.__file__).startswith(os.path.realpath(sys.prefix)), npgan.__file__
rng = np.random.default_rng(0)
G = models.Generator(z_dim=5, hidden=16, out=12, rng=rng)
D = models.Discriminator(inp=12, units=6, pieces=3, irange=0.05, rng=rng)
data = rng.uniform(0, 1, (16, 12)).astype("float32")
t = train.GANTrainer(G, D, data, batch_size=8, seed=0)
before = [p.data.copy() for p in G.parameters() + D.parameters()]
stats = t.step(data[:8])
moved = [not np.array_equal(a, p.data) for a, p in zip(before, G.parameters() + D.parameters())]
print(json.dumps({"available": _kernels.available(), "blas": _kernels.blas(), "stats": stats,
                  "moved": moved}))
"""


def _numpy_only_venv(path):
    """A fresh venv (no pip, no site packages) that sees this environment's
    NumPy and nothing else: links to NumPy's installed top-level entries."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    python = str(path / ("Scripts" if os.name == "nt" else "bin") / "python")
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip()
    dist = importlib.metadata.distribution("numpy")
    tops = {str(f).replace("\\", "/").split("/")[0] for f in dist.files}
    for top in sorted(tops - {"..", ""}):
        src = dist.locate_file(top)
        if os.path.exists(src):
            os.symlink(src, os.path.join(site, top))
    return python


@pytest.mark.skipif(os.name == "nt", reason="CC=false and symlinked NumPy: POSIX")
def test_no_compiler_installs_the_numpy_package_that_trains(sdist, tmp_path):
    """CC=false (a compiler that fails whatever it is given): the wheel builds
    without extensions, saying so once; installed in a fresh venv with NumPy
    and no SciPy, npgan imports, reports no kernels, and a GAN step trains."""
    env = _clean_env(CC="false", CXX="false", LDSHARED="false")
    wheel, log = _build_wheel(sdist, tmp_path, env)
    _one_warning(log, "no working C compiler ('false'")
    names = _no_extensions(wheel)
    assert {f"npgan/_kernels/{n}.pyx" for n in KERNEL_NAMES} <= set(names)

    python = _numpy_only_venv(tmp_path / "venv")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--no-cache-dir", "-q", wheel], env=_clean_env())
    out = _run([python, "-c", TRAIN_STEP], env=_clean_env(), cwd=str(tmp_path))
    result = json.loads(out.strip().splitlines()[-1])
    assert result["available"] == {n: False for n in KERNEL_NAMES}
    assert result["blas"].startswith("numpy")
    assert set(result["stats"]) >= {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(result["moved"]), result["moved"]


def test_no_cython_builds_without_extensions(sdist, tmp_path):
    """Cython missing at build time (hidden by a package that refuses to
    import): the same fallback, with that reason, no compiler needed."""
    stub = tmp_path / "hide" / "Cython"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('Cython hidden by test_install')\n")
    env = _clean_env(PYTHONPATH=str(tmp_path / "hide"))
    wheel, log = _build_wheel(sdist, tmp_path, env)
    _one_warning(log, "Cython is not installed")
    _no_extensions(wheel)
