"""Which BLAS the compiled kernels call, and how many threads it runs.

The layers' products (gemm.pyx) are computed by "npgan" (the default where
the CPU has AVX-512): float32 products by npgan's own kernel (sgemm.h,
blocked and packed for the 100-200-row shapes of a GAN step, where it runs
faster than SciPy's OpenBLAS), float64 ones (gradient checks) and products
narrower than 16 columns by SciPy's BLAS; "scipy" (the default elsewhere):
SciPy's BLAS (OpenBLAS, through cython_blas) for all; "mkl" (pip install
"npgan[mkl]"): Intel MKL's sgemm_/dgemm_, loaded at run time from libmkl_rt
with its sequential threading layer. In every case the kernels' pool
(pool.pyx) does the threading, with the thread count SciPy's OpenBLAS is set
to, found here through ctypes (:func:`thread_functions`). The Parzen kernel
keeps SciPy's BLAS. The choice and the thread count are settings
(npgan.settings: ``blas``, ``blas_threads``).
"""
import contextlib
import ctypes
import glob
import os
import sys

from .. import settings

BLAS_NAMES = settings.BLAS_NAMES
_state = {"name": "scipy", "mkl": None}   # mkl: (lib, sgemm_, dgemm_, version) once loaded


def thread_functions():
    """Addresses of (get_num_threads, set_num_threads) of the OpenBLAS behind
    scipy.linalg.cython_blas, or (0, 0) when it cannot be told apart (not
    Linux, not OpenBLAS, or several candidates)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split(None, 5)[5].strip() for line in f if "openblas" in line.lower()
                    and len(line.split(None, 5)) == 6}
    except OSError:
        return 0, 0
    scipys = [p for p in libs if "scipy" in os.path.basename(os.path.dirname(p))]
    libs = scipys or sorted(libs)
    if len(libs) != 1:
        return 0, 0
    try:
        lib = ctypes.CDLL(libs[0])
    except OSError:
        return 0, 0
    for prefix in ("scipy_openblas", "openblas"):
        for suffix in ("", "64_"):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                return (ctypes.cast(get, ctypes.c_void_p).value,
                        ctypes.cast(put, ctypes.c_void_p).value)
    return 0, 0


# --- the thread count ----------------------------------------------------------
# blas_threads=n: threadpoolctl's limits (every BLAS loaded now: NumPy's,
# SciPy's) where it is installed, else SciPy's OpenBLAS through ctypes; the
# kernels apply it again when they load SciPy's OpenBLAS (apply_threads).
_limits = []         # [threadpool_limits] while a count is set through threadpoolctl
_original = {}       # "ctypes": SciPy OpenBLAS's count before the first change


def _ctypes_set(n):
    get, put = thread_functions()
    if not put:
        return
    if "ctypes" not in _original:
        _original["ctypes"] = ctypes.CFUNCTYPE(ctypes.c_int)(get)()
    ctypes.CFUNCTYPE(None, ctypes.c_int)(put)(n if n is not None else _original.pop("ctypes"))


def set_threads(n):
    """Every BLAS loaded in the process to ``n`` threads (None: their counts
    before npgan first changed them)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    while _limits:
        _limits.pop().restore_original_limits()
    if n is not None and threadpool_limits is not None:
        _limits.append(threadpool_limits(n, user_api="blas"))
    if threadpool_limits is None or (n is None and "ctypes" in _original):
        _ctypes_set(n)


def apply_threads():
    """After SciPy's OpenBLAS is loaded: give it the ``blas_threads`` setting."""
    if settings.get("blas_threads") is not None:
        set_threads(settings.get("blas_threads"))


@contextlib.contextmanager
def threads(n):
    """BLAS at ``n`` threads inside a ``with`` block (settings.override)."""
    with settings.override(blas_threads=n):
        yield


# --- the GEMM library ----------------------------------------------------------

def find_mkl():
    """Path of libmkl_rt in this environment (pip's mkl wheel puts it in
    <prefix>/lib) or on the system, else None."""
    import ctypes.util
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
        if found:
            return found[-1]
    return ctypes.util.find_library("mkl_rt")


def _load_mkl(path):
    """(lib, sgemm_, dgemm_ addresses, version string) of the MKL at ``path``,
    switched to its sequential threading layer."""
    try:
        lib = ctypes.CDLL(path)
        lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
        lib.MKL_Set_Threading_Layer.restype = ctypes.c_int
    except (OSError, AttributeError) as e:
        raise RuntimeError(f"NPGAN_BLAS=mkl: cannot load MKL from {path}: {e}") from e
    layer = lib.MKL_Set_Threading_Layer(1)            # MKL_THREADING_SEQUENTIAL
    if layer != 1:
        raise RuntimeError(f"NPGAN_BLAS=mkl: MKL at {path} is already in use in this process "
                           f"with threading layer {layer}, not the sequential one npgan needs")
    buf = ctypes.create_string_buffer(256)
    try:
        lib.mkl_get_version_string(buf, len(buf))
        version = buf.value.decode(errors="replace").strip()
    except AttributeError:
        version = "MKL"
    addr = lambda name: ctypes.cast(getattr(lib, name), ctypes.c_void_p).value  # noqa: E731
    return lib, addr("sgemm_"), addr("dgemm_"), version


def default_name(gemm):
    """The GEMM used unless one is asked for: npgan's own where the compiled
    gemm module ``gemm`` finds AVX-512, else SciPy's."""
    return "npgan" if gemm.own_sgemm_supported() else "scipy"


def select(gemm, name):
    """Point the compiled gemm module at the BLAS ``name`` (None: the default);
    -> the previous name. RuntimeError, saying what to do, where the machine
    lacks AVX-512 ("npgan") or MKL cannot be found or loaded ("mkl")."""
    name = name or default_name(gemm)
    if name not in BLAS_NAMES:
        raise ValueError(f"NPGAN_BLAS / use_blas: 'npgan', 'scipy' or 'mkl', got {name!r}")
    prev = _state["name"]
    if name == "npgan" and not gemm.own_sgemm_supported():
        raise RuntimeError("NPGAN_BLAS=npgan: npgan's own GEMM needs an x86-64 CPU with "
                           "AVX-512F, which this machine lacks; use 'scipy' (or 'mkl')")
    if name == "mkl":
        if _state["mkl"] is None:
            path = find_mkl()
            if path is None:
                raise RuntimeError("NPGAN_BLAS=mkl: libmkl_rt not found in this environment or "
                                   "on the system; install it with pip install \"npgan[mkl]\" "
                                   "(the mkl wheel), or unset NPGAN_BLAS to use SciPy's BLAS")
            _state["mkl"] = _load_mkl(path)
        gemm.set_gemm(*_state["mkl"][1:3])
    else:
        gemm.set_gemm(0, 0)
    gemm.set_own_sgemm(name == "npgan")
    _state["name"] = name
    return prev


def describe(gemm):
    """Which GEMM computes the layers' products now, given the compiled gemm
    module (None: "numpy ..." without the kernels)."""
    if gemm is None:
        return "numpy (compiled kernels not in use)"
    if _state["name"] == "mkl":
        return f"mkl ({_state['mkl'][3]})"
    if _state["name"] == "npgan":
        if not gemm.own_sgemm_active():
            return "scipy (npgan's own sgemm is off with NPGAN_GEMM_SPLIT=0)"
        return "npgan (AVX-512; float64: scipy)"
    return "scipy"
