"""Compiled kernels (Cython) and the switch between them and their references.

Each ``<name>.pyx`` here is built into ``npgan._kernels.<name>``. Callers ask
:func:`load` for a compiled module and fall back to the plain-NumPy reference
(``reference.py`` or the module's own NumPy path) when it returns None: the
extension was not built, cannot be imported (e.g. SciPy missing for BLAS), the
backend is not NumPy, or ``NPGAN_NO_KERNELS=1`` is set.
"""
import importlib
import os

from .. import backend

_cache = {}


def disabled():
    """True when the environment asks for the reference path."""
    return os.environ.get("NPGAN_NO_KERNELS", "") not in ("", "0")


def load(name):
    """The compiled module ``npgan._kernels.<name>``, or None (see above)."""
    if disabled() or not backend.is_numpy():
        return None
    if name not in _cache:
        try:
            _cache[name] = importlib.import_module(f"{__name__}.{name}")
        except ImportError:
            _cache[name] = None
        else:
            if name in _ON_LOAD:
                try:
                    _ON_LOAD[name](_cache[name])
                except Exception:
                    del _cache[name]          # not set up: the next load() tries (and raises) again
                    raise
    return _cache[name]


def cuda_kernels():
    """``npgan._kernels.cuda`` (CuPy kernels) when the backend is CuPy and kernels
    are not disabled, else None. Imported on first use only: CuPy is never
    imported for the NumPy backend."""
    if disabled() or backend.name != "cupy":
        return None
    if "cuda" not in _cache:
        try:
            _cache["cuda"] = importlib.import_module(f"{__name__}.cuda")
        except ImportError:
            _cache["cuda"] = None
    return _cache["cuda"]


def _cuda(*arrays):
    """The CuPy kernels module if it takes these arrays (float32/64 CuPy arrays of
    one dtype and shape), else None."""
    cu = cuda_kernels()
    return cu if cu is not None and cu.accepts(*arrays) else None


def available():
    """{name: whether the compiled kernel module imports and is in use}, for
    reports: every kernel this package has a source or a build of, so an
    install without them (no C compiler at install time) shows each as False
    (with the CuPy backend: whether the CUDA kernels are in use, as "cuda")."""
    import importlib.machinery
    here = os.path.dirname(__file__)
    ends = (".pyx",) + tuple(importlib.machinery.EXTENSION_SUFFIXES)
    names = sorted({f.split(".")[0] for f in os.listdir(here) if f.endswith(ends)})
    out = {n: load(n) is not None for n in names}
    if backend.name == "cupy":
        out["cuda"] = cuda_kernels() is not None
    return out


# --- fused activations: compiled when possible, else reference.py -------------
import numpy as _np

from . import reference as _ref

_FLOATS = (_np.dtype(_np.float32), _np.dtype(_np.float64))


def _compiled(x):
    """The activations module if it can take ``x`` (NumPy float32/64, non-empty)."""
    k = load("activations")
    if k is None or not isinstance(x, _np.ndarray) or x.dtype not in _FLOATS or x.size == 0:
        return None
    return k


def _unary(kname, refname):
    def f(x):
        k = _compiled(x)
        if k is None:
            cu = _cuda(x)
            return cu.UNARY[refname](x) if cu else getattr(_ref, refname)(x)
        out = _np.empty(x.shape, dtype=x.dtype)     # not empty_like(ascontiguousarray(x)): keeps 0-d
        getattr(k, kname)(_np.ascontiguousarray(x).reshape(-1), out.reshape(-1))
        return out
    f.__name__ = refname
    f.__doc__ = getattr(_ref, refname).__doc__
    return f


def _binary(kname, refname, *extra):
    def f(g, x):
        k = _compiled(x)
        if k is None or g.shape != x.shape:
            cu = _cuda(g, x)
            return cu.BINARY[refname](g, x) if cu else getattr(_ref, refname)(g, x)
        out = _np.empty(x.shape, dtype=x.dtype)
        getattr(k, kname)(_np.ascontiguousarray(g, dtype=x.dtype).reshape(-1),
                          _np.ascontiguousarray(x).reshape(-1), *extra, out.reshape(-1))
        return out
    f.__name__ = refname
    f.__doc__ = getattr(_ref, refname).__doc__
    return f


relu_forward = _unary("relu_forward", "relu_forward")
relu_backward = _binary("relu_backward", "relu_backward")
sigmoid_forward = _unary("sigmoid_forward", "sigmoid_forward")
sigmoid_backward = _binary("sigmoid_backward", "sigmoid_backward")
softplus_forward = _unary("softplus_forward", "softplus_forward")
softplus_backward = _binary("sigmoid_times", "softplus_backward", 1)
log_sigmoid_forward = _unary("log_sigmoid_forward", "log_sigmoid_forward")
log_sigmoid_backward = _binary("sigmoid_times", "log_sigmoid_backward", -1)


# --- layers: linear (GEMM + bias + activation), maxout, dropout; SGD ----------
# Compiled (layers.pyx, update.pyx) for NumPy float32/float64 arrays of one
# dtype, else the references (NumPy or CuPy through backend.xp, with the CUDA
# activations/maxout on CuPy). Both paths take and return the same things,
# refuse the same inputs, and agree to rounding (bit for bit where no GEMM is
# involved). The compiled kernels refuse empty batches; these wrappers send an
# empty batch to the reference instead, which returns the empty result.

ACTIVATIONS = (None, "relu", "sigmoid")


def _blas_thread_functions():
    """Addresses of (get_num_threads, set_num_threads) of the OpenBLAS behind
    scipy.linalg.cython_blas, or (0, 0) when it cannot be told apart (not
    Linux, not OpenBLAS, or several candidates)."""
    import ctypes
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


# --- which GEMM computes the layers' products ----------------------------------
# "npgan" (the default where the CPU has AVX-512): float32 products by npgan's
# own kernel (sgemm.h, blocked and packed for the 100-200-row shapes of a GAN
# step, where it runs faster than SciPy's OpenBLAS), float64 ones (gradient
# checks) and products narrower than 16 columns by SciPy's BLAS. "scipy" (the
# default elsewhere): SciPy's BLAS (OpenBLAS, through cython_blas) for all.
# "mkl" (NPGAN_BLAS=mkl, pip install "npgan[mkl]"): Intel MKL's sgemm_/dgemm_,
# loaded at run time from libmkl_rt with its sequential threading layer. In
# every case layers.pyx's pool does the threading, with the thread count that
# SciPy's BLAS is set to. The Parzen kernel keeps SciPy's BLAS.

BLAS_NAMES = ("npgan", "scipy", "mkl")
_blas = {"name": "scipy", "mkl": None}   # mkl: (lib, sgemm_, dgemm_, version) once loaded


def _find_mkl():
    """Path of libmkl_rt in this environment (pip's mkl wheel puts it in
    <prefix>/lib) or on the system, else None."""
    import ctypes.util
    import glob
    import sys
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
        if found:
            return found[-1]
    return ctypes.util.find_library("mkl_rt")


def _load_mkl(path):
    """(sgemm_, dgemm_ addresses, version string) of the MKL at ``path``,
    switched to its sequential threading layer."""
    import ctypes
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


def _checked_blas_name(name):
    if name not in BLAS_NAMES:
        raise ValueError(f"NPGAN_BLAS / use_blas: 'npgan', 'scipy' or 'mkl', got {name!r}")
    return name


def _default_blas(k):
    return "npgan" if k.own_sgemm_supported() else "scipy"


def _set_blas(k, name):
    """Point the compiled layers module ``k`` at the BLAS ``name``; -> the previous name."""
    _checked_blas_name(name)
    prev = _blas["name"]
    if name == "npgan" and not k.own_sgemm_supported():
        raise RuntimeError("NPGAN_BLAS=npgan: npgan's own GEMM needs an x86-64 CPU with "
                           "AVX-512F, which this machine lacks; use 'scipy' (or 'mkl')")
    if name == "mkl":
        if _blas["mkl"] is None:
            path = _find_mkl()
            if path is None:
                raise RuntimeError("NPGAN_BLAS=mkl: libmkl_rt not found in this environment or "
                                   "on the system; install it with pip install \"npgan[mkl]\" "
                                   "(the mkl wheel), or unset NPGAN_BLAS to use SciPy's BLAS")
            _blas["mkl"] = _load_mkl(path)
        k.set_gemm(*_blas["mkl"][1:3])
    else:
        k.set_gemm(0, 0)
    k.set_own_sgemm(name == "npgan")
    _blas["name"] = name
    return prev


def use_blas(name):
    """Compute the layers' GEMMs with "npgan" (npgan's own float32 kernel,
    AVX-512 only; the default there), "scipy" (SciPy's BLAS; the default
    elsewhere) or "mkl" (Intel MKL from libmkl_rt: ``pip install "npgan[mkl]"``).
    Raises ValueError for another name and RuntimeError, saying what to do,
    when the machine lacks AVX-512 ("npgan") or MKL cannot be found or loaded
    ("mkl"). No effect without the compiled kernels. Returns the previous name."""
    k = load("layers")
    if k is None:
        _checked_blas_name(name)
        return _blas["name"]
    return _set_blas(k, name)


def blas():
    """Which GEMM computes the layers' products now: "npgan (AVX-512; float64:
    scipy)", "scipy", "mkl (version)", or "numpy ..." without the kernels."""
    k = load("layers")          # the first load sets the default (NPGAN_BLAS)
    if k is None:
        return "numpy (compiled kernels not in use)"
    if _blas["name"] == "mkl":
        return f"mkl ({_blas['mkl'][3]})"
    if _blas["name"] == "npgan":
        if not k.own_sgemm_active():
            return "scipy (npgan's own sgemm is off with NPGAN_GEMM_SPLIT=0)"
        return "npgan (AVX-512; float64: scipy)"
    return "scipy"


def _setup_layers(module):
    """On first load: let layers.gemm split big products over threads (see
    layers.pyx) unless NPGAN_GEMM_SPLIT=0 leaves the threading to BLAS; spin
    NPGAN_POOL_SPIN_US (default 1000) before idle threads block; the BLAS of
    NPGAN_BLAS (default: npgan where the CPU has AVX-512, else scipy)."""
    module.set_blas_threading(*_blas_thread_functions())
    module.set_split(os.environ.get("NPGAN_GEMM_SPLIT", "") != "0")
    try:
        spin = float(os.environ.get("NPGAN_POOL_SPIN_US", "") or 1000)
    except ValueError:
        raise ValueError("NPGAN_POOL_SPIN_US must be a number of microseconds, got "
                         f"{os.environ['NPGAN_POOL_SPIN_US']!r}") from None
    module.set_spin(spin)
    _set_blas(module, os.environ.get("NPGAN_BLAS", "") or _default_blas(module))


_ON_LOAD = {"layers": _setup_layers}
_ACT_CODE = {None: 0, "relu": 1, "sigmoid": 2}      # as in layers.pyx


def _numpy_floats(*arrays):
    """True if every non-None array is a NumPy float32/float64 array, all of one
    dtype (at least one array). A plain loop: this runs for every layer op."""
    dtype = None
    for a in arrays:
        if a is None:
            continue
        if not isinstance(a, _np.ndarray):
            return False
        if dtype is None:
            dtype = a.dtype
            if dtype not in _FLOATS:
                return False
        elif a.dtype != dtype:
            return False
    return dtype is not None


def _layers(*arrays):
    """The compiled layers module if it takes these arrays, else None."""
    k = load("layers")
    return k if k is not None and _numpy_floats(*arrays) else None


def _gemm_operand(a):
    """``a`` itself if C- or F-contiguous (BLAS takes either), else a C copy."""
    return a if a.flags.c_contiguous or a.flags.f_contiguous else _np.ascontiguousarray(a)


def linear_forward(x, weight, bias=None, activation=None, keep=True):
    """y = activation(x @ weight + bias) -> (y, saved), ``saved`` being what
    :func:`linear_backward` needs: y for relu, the pre-activation for sigmoid
    (its exact backward needs x, not y), None without activation (and None
    when ``keep`` is False: no backward will follow, so no pre-activation is
    stored).

    x (N, in), weight (in, out), bias (out,) or None, one float dtype; N > 0.
    Compiled: one GEMM into a fresh output, then bias and activation in one
    pass over it."""
    if activation not in _ACT_CODE:
        raise ValueError(f"linear: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[0] or (
            bias is not None and tuple(bias.shape) != (weight.shape[1],)):
        raise ValueError(f"linear: need x (N, in), weight (in, out), bias (out,); got "
                         f"{tuple(x.shape)}, {tuple(weight.shape)}, "
                         f"{None if bias is None else tuple(bias.shape)}")
    k = _layers(x, weight, bias)
    if k is None or x.size == 0:          # empty batch, or in_features = 0
        z, _ = _ref.linear_forward(x, weight, bias)
        if activation is None:
            return z, None
        y = (relu_forward if activation == "relu" else sigmoid_forward)(z)
        return y, (y if activation == "relu" else z if keep else None)
    y = _np.empty((x.shape[0], weight.shape[1]), dtype=x.dtype)
    k.gemm(_gemm_operand(x), _gemm_operand(weight), y)
    pre = _np.empty_like(y) if activation == "sigmoid" and keep else None
    k.bias_act(y, None if bias is None else _np.ascontiguousarray(bias), _ACT_CODE[activation], pre)
    return y, (y if activation == "relu" else pre)


def linear_backward(g, x, weight, saved, activation=None, need_x=True, need_weight=True,
                    need_bias=True):
    """Gradients (gx, gweight, gbias) of :func:`linear_forward` for the
    upstream gradient g (N, out); each is None unless asked for, and its GEMM
    is skipped. Compiled: g * activation' and the bias gradient in one pass,
    then at most two GEMMs (g W^T and x^T g, transposes by BLAS flags), run
    at the same time on two threads when both are needed (layers.gemm2)."""
    if activation not in _ACT_CODE:
        raise ValueError(f"linear: activation must be one of {ACTIVATIONS}, got {activation!r}")
    k = _layers(g, x, weight, saved)
    if k is None or x.size == 0:
        if activation is not None:
            g = (relu_backward if activation == "relu" else sigmoid_backward)(g, saved)
        return _ref.linear_backward(g, x, weight, None, None, need_x, need_weight, need_bias)
    g = _np.ascontiguousarray(g)
    gb = _np.empty(g.shape[1], dtype=g.dtype) if need_bias else None
    if activation is None:
        gpre = g
        if need_bias:
            k.act_backward(g, None, 0, None, gb)
    else:
        gpre = _np.empty_like(g)
        k.act_backward(g, _np.ascontiguousarray(saved), _ACT_CODE[activation], gpre, gb)
    gx = _np.empty(x.shape, dtype=g.dtype) if need_x else None
    gw = _np.empty(weight.shape, dtype=g.dtype) if need_weight else None
    if need_x and need_weight:              # equal cost, independent: at once, a thread each
        k.gemm2(gpre, _gemm_operand(weight).T, gx, _gemm_operand(x).T, gpre, gw)
    elif need_x:
        k.gemm(gpre, _gemm_operand(weight).T, gx)
    elif need_weight:
        k.gemm(_gemm_operand(x).T, gpre, gw)
    return gx, gw, gb


def maxout_forward(x, pieces):
    """(..., units*pieces) -> (y (..., units), arg): the max of each group of
    ``pieces`` consecutive features and its index in the group (the first
    maximum, or the first NaN, as numpy.argmax). arg is uint8 on the compiled
    path (pieces <= 256), int64 on the others; maxout_backward takes either."""
    if x.ndim == 0 or pieces < 1 or x.shape[-1] % pieces:
        raise ValueError(f"maxout: last axis of {tuple(x.shape)} is not a multiple of pieces={pieces}")
    k = _layers(x)
    if k is None or pieces > 256 or x.size == 0:
        cu = _cuda(x)
        return (cu.maxout_forward if cu else _ref.maxout_forward)(x, pieces)
    y = _np.empty(x.shape[:-1] + (x.shape[-1] // pieces,), dtype=x.dtype)
    arg = _np.empty(y.shape, dtype=_np.uint8)
    k.maxout_forward(_np.ascontiguousarray(x).reshape(-1), pieces, y.reshape(-1), arg.reshape(-1))
    return y, arg


def maxout_backward(g, arg, pieces):
    """Scatter g (..., units) to the argmax of each group: (..., units*pieces)."""
    k = _layers(g)
    if k is None or arg.dtype != _np.uint8 or g.shape != arg.shape or g.size == 0:
        cu = _cuda(g)
        return (cu.maxout_backward if cu else _ref.maxout_backward)(g, arg, pieces)
    gx = _np.empty(g.shape[:-1] + (g.shape[-1] * pieces,), dtype=g.dtype)
    k.maxout_backward(_np.ascontiguousarray(g).reshape(-1), arg.reshape(-1), pieces, gx.reshape(-1))
    return gx


uniform_draws = _ref.uniform_draws


def _dropout(x, u, p):
    """x * mask, mask = 1/(1-p) where the draw < 1-p, else 0 (in x's dtype);
    u: the float32 draws, or the uint32 words they are made of (see
    reference.dropout_forward)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if tuple(u.shape) != tuple(x.shape):
        raise ValueError(f"dropout: draws of shape {tuple(u.shape)} for input {tuple(x.shape)}")
    if u.dtype not in (_np.float32, _np.uint32):
        raise TypeError(f"dropout: draws must be float32 (or their uint32 words), got {u.dtype}")
    k = _layers(x)
    if k is None or x.size == 0 or not isinstance(u, _np.ndarray):
        return _ref.dropout_forward(x, u, p)
    out = _np.empty(x.shape, dtype=x.dtype)
    k.dropout(_np.ascontiguousarray(x).reshape(-1), _np.ascontiguousarray(u).reshape(-1),
              _ref.dropout_keep(p), x.dtype.type(1.0 / (1.0 - p)), out.reshape(-1))
    return out


def dropout_forward(x, u, p):
    """Inverted dropout of x given its uniform draws u (x's shape: float32
    draws, or the uint32 words of NumPy's float32 draws, see
    reference.uniform_draws): x * (draw < 1-p) / (1-p). The draws, not a mask,
    are what the backward keeps."""
    return _dropout(x, u, p)


def dropout_backward(g, u, p):
    """g * (draw < 1-p) / (1-p): the same mask and scale as the forward."""
    return _dropout(g, u, p)


_ADD_MIN = 1 << 16                 # elements: below, a + b (a thread split costs more)


def add(a, b):
    """a + b, the same bits: for gradient accumulation in Tensor.backward.
    Big float arrays of one shape and dtype (NumPy, C-contiguous) are added in
    bands on the kernels' threads; anything else by the array module."""
    if (a.size < _ADD_MIN or not _numpy_floats(a, b) or a.shape != b.shape
            or not (a.flags.c_contiguous and b.flags.c_contiguous)):
        return a + b
    k = load("update")
    if k is None:
        return a + b
    out = _np.empty(a.shape, a.dtype)
    k.add(a.reshape(-1), b.reshape(-1), out.reshape(-1))
    return out


def all_finite(a):
    """True if array ``a`` holds no NaN or inf. Big contiguous NumPy floats are
    read once, in bands on the kernels' threads (a max over exponent bits);
    anything else by the array module."""
    if a.size >= _ADD_MIN and _numpy_floats(a) and a.flags.c_contiguous:
        k = load("update")
        if k is not None:
            return k.all_finite(a.reshape(-1))
    return bool(backend.xp.isfinite(a).all())


def sgd_momentum_(p, v, g, lr, momentum, nesterov=False):
    """In place: v <- momentum v - lr g; p <- p + v (Nesterov: p <- p +
    momentum v - lr g). One pass over memory when compiled; bit for bit the
    reference's result either way (lr, momentum rounded to p's dtype, as NumPy
    does for Python floats)."""
    k = load("update")
    if (k is None or not _numpy_floats(p, v, g) or p.shape != v.shape or p.shape != g.shape
            or not (p.flags.c_contiguous and v.flags.c_contiguous)):
        return _ref.sgd_momentum_(p, v, g, lr, momentum, nesterov)
    k.sgd_momentum(p.reshape(-1), v.reshape(-1), _np.ascontiguousarray(g).reshape(-1),
                   float(lr), float(momentum), bool(nesterov))
