"""npgan's run-time settings: read from the environment once, changed in code.

The environment gives the defaults, read when npgan is first imported (the
one place npgan reads these variables):

- ``NPGAN_NO_KERNELS=1``: the plain NumPy references instead of the compiled
  and CUDA kernels (``kernels=False``).
- ``NPGAN_BACKEND=cupy``: the array module chosen at import (``backend.use``).
- ``NPGAN_BLAS=npgan|scipy|mkl``: the GEMM behind the layers (``blas``; empty:
  npgan's own where the CPU has AVX-512, else SciPy's).
- ``NPGAN_GEMM_SPLIT=0``: let BLAS thread big products itself instead of the
  kernels' pool (``gemm_split=False``).
- ``NPGAN_POOL_SPIN_US``: microseconds an idle pool thread spins before it
  blocks (``pool_spin_us``, default 1000).

The BLAS thread count starts as BLAS's own (OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS, read by OpenBLAS itself); ``blas_threads=n`` sets it at run
time for every BLAS in the process (threadpoolctl where installed, else the
OpenBLAS behind SciPy), ``blas_threads=None`` gives back the original counts.
The data search's variables (``NPGAN_DATA``, ``XDG_CACHE_HOME``, ``NPGAN_NO_DOWNLOAD``) are
read here too, but at each search (:func:`data_environment`), not once: a user may point
``NPGAN_DATA`` somewhere after importing npgan.

    from npgan import settings
    settings.configure(blas_threads=1, gemm_split=False)    # a script's first lines
    with settings.override(kernels=False):                   # a test: the reference path
        ...
"""
import contextlib
import os

BLAS_NAMES = ("npgan", "scipy", "mkl")


def _flag(value):
    return value not in ("", "0")


def _spin(value):
    try:
        return float(value or 1000)
    except ValueError:
        raise ValueError(f"NPGAN_POOL_SPIN_US must be a number of microseconds, got {value!r}") from None


def _from_environment(env):
    """The defaults, from the mapping ``env`` (os.environ at import)."""
    return {"kernels": not _flag(env.get("NPGAN_NO_KERNELS", "")),
            "backend": env.get("NPGAN_BACKEND", "") or None,
            "blas": env.get("NPGAN_BLAS", "") or None,
            "gemm_split": env.get("NPGAN_GEMM_SPLIT", "") != "0",
            "pool_spin_us": _spin(env.get("NPGAN_POOL_SPIN_US", "")),
            "blas_threads": None}


_values = _from_environment(os.environ)
_hooks = []          # fn(changed: dict) of the modules that apply a setting (npgan._kernels)


def data_environment():
    """What npgan.datasets' search reads from the environment, now: {"data": NPGAN_DATA
    or None, "cache_home": XDG_CACHE_HOME or None, "download": False if
    NPGAN_NO_DOWNLOAD is set to anything but "" or "0", else True}."""
    return {"data": os.environ.get("NPGAN_DATA") or None,
            "cache_home": os.environ.get("XDG_CACHE_HOME") or None,
            "download": not _flag(os.environ.get("NPGAN_NO_DOWNLOAD", ""))}


def get(name):
    """The current value of one setting (see the module docstring for the names)."""
    return _values[name]


def kernels():
    """True unless the reference path is asked for (``NPGAN_NO_KERNELS=1`` or
    ``configure(kernels=False)``). Read on every op: a dict lookup."""
    return _values["kernels"]


def _check(name, value):
    if name not in _values or name == "backend":
        raise TypeError(f"settings.configure: unknown setting {name!r} (the backend: npgan.use)")
    if name == "blas" and value is not None and value not in BLAS_NAMES:
        raise ValueError(f"NPGAN_BLAS / use_blas: 'npgan', 'scipy' or 'mkl', got {value!r}")
    if name == "blas_threads" and value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"blas_threads must be a positive integer or None, got {value!r}")
    if name in ("kernels", "gemm_split"):
        return bool(value)
    if name == "pool_spin_us":
        return max(float(value), 0.0)
    return value


def configure(**changes):
    """Change settings now: kernels (bool), blas (name or None: the machine's
    default), gemm_split (bool), pool_spin_us (float), blas_threads (int, or
    None: BLAS's original counts). Raises TypeError for an unknown name,
    ValueError for a bad value (nothing changed then). Returns the previous
    values of the names given, for :func:`configure` to restore."""
    checked = {name: _check(name, value) for name, value in changes.items()}
    prev = {name: _values[name] for name in checked}
    _values.update(checked)
    try:
        for hook in _hooks:
            hook(checked)
    except Exception:
        _values.update(prev)
        for hook in _hooks:
            hook(prev)
        raise
    return prev


@contextlib.contextmanager
def override(**changes):
    """``configure(**changes)`` for the duration of a ``with`` block."""
    prev = configure(**changes)
    try:
        yield
    finally:
        configure(**prev)


def on_change(hook):
    """Register ``hook(changed)``, called by :func:`configure` with the
    changed {name: value} (npgan._kernels applies them to loaded modules)."""
    _hooks.append(hook)
    return hook


def machine():
    """What a result should record about where it was measured: CPU model, cores,
    Python, NumPy and npgan versions, the OpenBLAS variables that change its speed
    (OPENBLAS_NUM_THREADS, OPENBLAS_CORETYPE), and npgan's kernels and BLAS choice."""
    import platform
    import numpy
    from . import __version__
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu or platform.processor() or "?", "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": numpy.__version__, "npgan": __version__,
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "kernels": _values["kernels"], "blas": _values["blas"]}
