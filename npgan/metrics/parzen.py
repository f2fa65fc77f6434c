"""Gaussian Parzen-window log-likelihood: the metric of Table 1 of the GAN paper.

A Gaussian kernel of width sigma is put on each of M generated samples s_j; a
test point x (D values) then has

    log p(x) = logsumexp_j(-||x - s_j||^2 / (2 sigma^2)) - log M - (D/2) log(2 pi sigma^2).

The paper's protocol: sigma chosen over ``numpy.logspace(-1, 0, 10)`` by the
mean log-likelihood of 1,000 validation images, then the mean +- standard error
over the 10,000 test images is reported.

Arrays only (no Tensor). The NumPy path (``npgan._kernels.reference.parzen_lse``,
the reference of both kernels) runs on the active backend
(``backend.xp``, so CuPy too); with NumPy the compiled kernel
``npgan._kernels.parzen_kernel`` does the same work faster and is used when it is
built (``use_kernel=False`` or ``NPGAN_NO_KERNELS=1`` force the NumPy path).
Both work in blocks of test points and of samples: squared distances come from a
GEMM (||x||^2 + ||s||^2 - 2 x.s, clamped at 0: ``reference.gemm_sqdist``), are
computed once per block for all sigmas, and feed a streaming log-sum-exp with a running max accumulated in
float64.

Accuracy. The GEMM formula cancels: its error in a squared distance is at most
E = (4 + 10 sqrt(D)) u (||x||^2 + ||s||^2) (u: unit roundoff, 2^-24 in float32,
2^-53 in float64). 4u: rounding the two norms (u each of its own), the sum of
the norms (u), the last addition (u d, d <= 2 (||x||^2 + ||s||^2)); 10 sqrt(D) u:
the inner product 2 x.s, by Higham & Mary's probabilistic bound (SIAM J. Sci.
Comput. 41(5), 2019) |error| <= lambda sqrt(D) u sum_t |x_t s_t| with lambda =
10, which fails with a probability of order D^2 e^(-lambda^2 / 2) (< 1e-15
for D <= 1000); the worst case, D u, is never approached by rounding that is
not adversarial. log p(x) then moves by at most E / (2 sigma^2). The distances are computed in
float32 only when both inputs are float32 and that bound, over the largest
norms of x and samples and the smallest sigma, is within ``TOLERANCE`` nats
(0.5: a quarter of the paper's standard error; on MNIST at sigma = 0.1 the bound
is about 0.4 nats and the largest error seen 0.004); else in float64, and when even
float64's bound is over it (sigma below ~1e-5 of the data's scale) from the
differences themselves (x - s, no cancellation: relative error ~(D + 2) u of
each distance; O(N M D) without BLAS, on the NumPy path). See
:func:`distance_method`. Any positive finite sigma gives finite results, or a
ValueError when 1/(2 sigma^2) or a log-likelihood (about -min distance /
(2 sigma^2)) is beyond float64's range.
"""
import contextlib
import math
import os
import sys
import threading
import time

import numpy

from .. import _kernels, backend
from .._kernels import reference
from ..progress import Progress

__all__ = ["log_likelihood", "mean_and_se", "select_sigma", "evaluate", "distance_method",
           "error_bound", "usable_cores", "DEFAULT_SIGMAS", "TOLERANCE"]

#: the paper's sigma grid
DEFAULT_SIGMAS = numpy.logspace(-1, 0, 10)
#: (test rows, sample columns) per block: compiled kernel, NumPy path
KERNEL_BLOCKS = (512, 2048)
NUMPY_BLOCKS = (1024, 2048)
#: the compiled path's workers hold at most this many bytes of distance blocks
WORK_BYTES = 128 << 20
#: the largest error bound (nats per log-likelihood) accepted from the GEMM formula
TOLERANCE = 0.5


# ---------------------------------------------------------------- checks

def _as_2d(a, name):
    xp = backend.xp
    a = xp.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(a.shape)}")
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be real numbers, got dtype {a.dtype}")
    return a


def _check_inputs(x, samples, sigma):
    """-> (x, samples) C-contiguous, float32 if both are float32 (the caller may
    still ask for float64), else float64; sigmas (K,) float64; scalar?"""
    xp = backend.xp
    x, samples = _as_2d(x, "x"), _as_2d(samples, "samples")
    if x.shape[1] != samples.shape[1]:
        raise ValueError(f"shape mismatch: x has shape {tuple(x.shape)} but samples have "
                         f"shape {tuple(samples.shape)} (the second dimensions must agree)")
    if x.shape[0] == 0 or samples.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"empty input: x has shape {tuple(x.shape)}, samples have "
                         f"shape {tuple(samples.shape)}")
    big = 0.0
    for a, name in ((x, "x"), (samples, "samples")):
        lo, hi = float(a.min()), float(a.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = int((~xp.isfinite(a)).sum())
            raise ValueError(f"{name} contains {bad} NaN or infinite values")
        big = max(big, -lo, hi)
    # every squared distance is <= D (2 max|v|)^2; keep it far inside float64
    if x.shape[1] * 4.0 * big * big > 1e280:
        raise ValueError(f"values up to {big:.3g}: squared distances would overflow")
    sig = numpy.asarray(backend.to_numpy(sigma), dtype=numpy.float64)
    if sig.ndim > 1 or sig.size == 0:
        raise ValueError(f"sigma must be a positive scalar or a non-empty 1-D array, "
                         f"got shape {sig.shape}")
    if not (numpy.isfinite(sig).all() and (sig > 0).all()):
        raise ValueError(f"sigma must be positive and finite, got {sig}")
    dtype = xp.float32 if x.dtype == samples.dtype == xp.float32 else xp.float64
    # non-contiguous or other dtypes are copied (the kernel needs C order)
    x, samples = xp.ascontiguousarray(x, dtype), xp.ascontiguousarray(samples, dtype)
    return x, samples, numpy.atleast_1d(sig), sig.ndim == 0


def _unit_roundoff(dtype):
    return float(numpy.finfo(numpy.dtype(dtype)).eps) / 2


def error_bound(sqnorm_x, sqnorm_s, dim, sigma, dtype):
    """Bound (nats) on the error of log p(x) when the squared distances come
    from the GEMM formula in ``dtype``: (4 + 10 sqrt(D)) u (||x||^2 + ||s||^2)
    / (2 sigma^2), see the module docstring. Broadcasts over its arguments."""
    u = _unit_roundoff(dtype)
    sigma = numpy.asarray(sigma, dtype=numpy.float64)
    with numpy.errstate(over="ignore", under="ignore"):
        return (4 + 10 * math.sqrt(dim)) * u * (numpy.asarray(sqnorm_x) + numpy.asarray(sqnorm_s)) \
            * 0.5 / sigma / sigma


#: float32 exponents (c = 1 / (2 sigma^2) scaled by log2 e) stay normal numbers
_C32_RANGE = (1e-30, 1e30)


def _max_sqnorm(a):
    """An upper bound on max_i ||a_i||^2: the sums in a's dtype (one pass, no
    copy), raised by their worst rounding, gamma_D = D u / (1 - D u) relative."""
    du = a.shape[1] * _unit_roundoff(a.dtype)
    with numpy.errstate(over="ignore"):
        m = float(backend.xp.einsum("ij,ij->i", a, a).max())
    return m * (1 + du / (1 - du)) if du < 0.5 else math.inf


def distance_method(x, samples, sigma):
    """How :func:`log_likelihood` computes the squared distances of these
    inputs: "float32" or "float64" (the GEMM formula in that precision), or
    "direct" (float64 differences). float32 needs float32 inputs, every c =
    1/(2 sigma^2) within [1e-30, 1e30], distances below 1e37 and
    :func:`error_bound` within ``TOLERANCE`` at the largest norms; "float64"
    needs float64's bound within it. x (N, D), samples (M, D), sigma a scalar or 1-D array."""
    x, samples, sig, _ = _check_inputs(x, samples, sigma)
    return _method(x, samples, sig)


def _method(x, samples, sig):
    xx, ss, dim = _max_sqnorm(x), _max_sqnorm(samples), x.shape[1]
    smin = float(sig.min())
    c = 0.5 / smin / smin
    if (x.dtype == backend.xp.float32 and 2 * (xx + ss) < 1e37     # distances <= 2(xx + ss)
            and float(error_bound(xx, ss, dim, smin, "float32")) <= TOLERANCE
            and _C32_RANGE[0] <= 0.5 / float(sig.max()) / float(sig.max()) and c <= _C32_RANGE[1]):
        return "float32"
    if float(error_bound(xx, ss, dim, smin, "float64")) <= TOLERANCE:
        return "float64"
    return "direct"


def _blocks(block_size, default):
    if block_size is None:
        return default
    bx, bs = (block_size, block_size) if numpy.ndim(block_size) == 0 else block_size
    if int(bx) < 1 or int(bs) < 1:
        raise ValueError(f"block sizes must be >= 1, got {block_size}")
    return int(bx), int(bs)


# ---------------------------------------------------------------- the compiled path's threads

_blas_lock = threading.Lock()
_blas_users = [0, None]      # callers inside _one_blas_thread, their threadpool_limits


def _after_fork_in_child():
    """A forked child has only the thread that forked: a lock held by another
    thread of the parent (e.g. a Parzen call with threads=2) would stay held
    for ever, and BLAS stay pinned to one thread by callers that no longer
    exist. Start over: a fresh lock, no callers, BLAS's own limits back."""
    global _blas_lock
    _blas_lock = threading.Lock()
    limits, _blas_users[:] = _blas_users[1], [0, None]
    if limits is not None:
        # threadpoolctl (3.5+) serialises OpenBLAS's setting with a lock of its own
        # and a "controlling thread": both may be a parent thread's, gone here
        state = getattr(getattr(sys.modules.get("threadpoolctl"), "OpenBLASController", None),
                        "_SHARED_STATE", None)
        if state is not None and hasattr(state, "lock"):
            state.lock = threading.Lock()
            state.controlling_thread = None
        try:
            limits.restore_original_limits()
        except Exception:        # never break the child over a thread count
            pass


if hasattr(os, "register_at_fork"):          # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS pinned to one thread (threadpoolctl) while any caller is inside;
    yields False (and changes nothing) when threadpoolctl is not installed.
    Counted, so that overlapping calls from several threads restore once."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with _blas_lock:
        if _blas_users[0] == 0:
            _blas_users[1] = threadpool_limits(1, user_api="blas")
        _blas_users[0] += 1
    try:
        yield True
    finally:
        with _blas_lock:
            _blas_users[0] -= 1
            if _blas_users[0] == 0:
                _blas_users[1].restore_original_limits()
                _blas_users[1] = None


def _lse_kernel(kern, x, s, c, bx, bs, threads, progress):
    """The compiled path: x-blocks spread over ``threads`` workers, each with a
    single-threaded GEMM (or one worker and a threaded BLAS)."""
    ss = kern.sqnorms(s)
    out = numpy.empty((len(c), x.shape[0]))
    starts = range(0, x.shape[0], bx)

    def task(i0):
        out[:, i0:i0 + bx] = kern.lse_sqdist(x[i0:i0 + bx], s, ss, c, bs)
        return min(bx, x.shape[0] - i0)

    if threads > 1 and len(starts) > 1:
        with _one_blas_thread() as pinned:
            if pinned:
                from concurrent.futures import ThreadPoolExecutor
                with ThreadPoolExecutor(min(threads, len(starts))) as pool:
                    for rows in pool.map(task, starts):
                        progress.update(rows)
                return out
    for i0 in starts:                # one worker, BLAS threads as configured
        progress.update(task(i0))
    return out


def usable_cores():
    """The cores this process may run on (its CPU affinity where the OS has
    one, else the CPU count): the compiled path's default thread count, and
    the sweep's default worker count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------- public API

def log_likelihood(x, samples, sigma, block_size=None, *, use_kernel=None, threads=None,
                   progress=False):
    """Per-example Parzen log-likelihood log p(x_i).

    x: (N, D) test points; samples: (M, D) kernel centres (any real dtype; the
    distances are float32 when both are float32, else float64; non-contiguous
    inputs are copied). sigma: a positive scalar -> returns (N,) float64, or a
    1-D array of K widths -> returns (K, N) float64, all K from one pass over
    the distances. block_size: int or (rows of x, rows of samples) per block.
    use_kernel: None = the compiled kernel if built (NumPy backend) or the
    CUDA kernels (CuPy backend), True = require one, False = the NumPy path
    (any backend). threads: workers of the compiled CPU path (default: usable
    cores); each runs its own single-threaded
    GEMM, so while they run BLAS is pinned to one thread process-wide (needs
    threadpoolctl; without it one worker and a threaded BLAS are used).
    Extra memory is bounded by the block sizes (compiled: <= 128 MiB of
    blocks over all workers; NumPy path: ~5 float64 blocks), whatever N and M.
    progress: show progress on stderr (tqdm if installed).

    Precision: float32 inputs are computed in float64 where float32's error
    bound exceeds ``TOLERANCE`` nats (small sigma against the data's norms),
    and from the differences where float64's does too (see the module
    docstring and :func:`distance_method`): the error of every result is
    within TOLERANCE (direct path: within ~(D + 2) 2^-53 of |log p| more).
    Raises ValueError when 1/(2 sigma^2) overflows float64 (sigma < ~1e-154)
    or a result is beyond float64's range.
    """
    x, samples, sig, scalar = _check_inputs(x, samples, sigma)
    xp = backend.xp
    with numpy.errstate(over="ignore"):
        c = 0.5 / sig / sig                       # sigma^2 itself may underflow
    if not numpy.isfinite(c).all():
        raise ValueError(f"sigma = {float(sig.min()):.3g} is too small: 1/(2 sigma^2) "
                         "overflows float64")
    # a c below 1e-300 (sigma > ~7e149) is taken as 1e-300: log p moves by at most
    # 1e-300 * max distance <= 1e-20 nats (distances are <= 1e280, see _check_inputs)
    c = numpy.maximum(c, 1e-300)
    method = _method(x, samples, sig)
    if method != "float32" and x.dtype != xp.float64:
        x, samples = x.astype(xp.float64), samples.astype(xp.float64)
    kern = _kernels.load("parzen_kernel") if use_kernel in (None, True) else None
    cuda = _kernels.cuda_kernels() if use_kernel in (None, True) else None   # CuPy backend
    if use_kernel and kern is None and cuda is None:
        raise RuntimeError("parzen_kernel is not available (not built, NPGAN_NO_KERNELS "
                           "set, or the backend is not NumPy)")
    if method == "direct":                  # the differences: NumPy (any backend) only
        kern = cuda = None
    bar = Progress(x.shape[0], "parzen", progress)
    try:
        if kern is not None:
            threads = usable_cores() if threads is None else max(1, int(threads))
            bx, bs = _blocks(block_size, KERNEL_BLOCKS)
            if block_size is None:        # >= 4 blocks per worker, for balance
                bx = min(bx, max(64, -(-x.shape[0] // (4 * threads))))
            # each worker holds a (bx, bs) block: keep them all under WORK_BYTES
            threads = min(threads, max(1, WORK_BYTES // (bx * bs * x.dtype.itemsize)))
            lse = _lse_kernel(kern, x, samples, c, bx, bs, threads, bar)
        elif cuda is not None:
            bx, bs = _blocks(block_size, cuda.BLOCKS)
            lse = cuda.lse_sqdist(x, samples, c, bx, bs, bar)
        else:
            bx, bs = _blocks(block_size, NUMPY_BLOCKS)
            if method == "direct" and block_size is None:
                bx = bs = 256
            lse = reference.parzen_lse(x, samples, c, bx, bs, bar, direct=method == "direct")
    finally:
        bar.close()
    # log(2 pi sigma^2) as log(2 pi) + 2 log(sigma): sigma^2 may under- or overflow
    const = math.log(samples.shape[0]) + 0.5 * x.shape[1] * (math.log(2 * math.pi)
                                                             + 2 * numpy.log(sig))
    ll = lse - xp.asarray(const)[:, None]
    if not bool(xp.isfinite(ll).all()):
        raise ValueError(f"log-likelihoods beyond float64's range at sigma = "
                         f"{float(sig.min()):.3g} (about -min distance / (2 sigma^2)): "
                         "sigma is too small for these data")
    return ll[0] if scalar else ll


def mean_and_se(ll):
    """(mean, standard error) of log-likelihoods along the last axis.

    se = std(ll, ddof=1) / sqrt(N) (the authors' script used ddof=0; the two
    differ by a factor sqrt(N / (N - 1)), 1.00005 for N = 10,000). Floats for
    1-D input, arrays of shape ll.shape[:-1] otherwise."""
    ll = numpy.asarray(backend.to_numpy(ll), dtype=numpy.float64)
    n = ll.shape[-1]
    if n == 0:
        raise ValueError("mean_and_se of an empty array")
    mean = ll.mean(axis=-1)
    se = ll.std(axis=-1, ddof=1) / math.sqrt(n) if n > 1 else numpy.zeros_like(mean)
    if ll.ndim == 1:
        return float(mean), float(se)
    return mean, se


def select_sigma(valid_x, samples, sigmas=DEFAULT_SIGMAS, n_valid=1000, **kwargs):
    """The paper's sigma selection: -> (best sigma, per-sigma mean log-likelihood).

    valid_x: (N, D) validation points, of which the first ``n_valid`` are used
    (None: all); sigmas: 1-D grid (default ``logspace(-1, 0, 10)``). The curve
    is a float64 NumPy array of shape (len(sigmas),); ties go to the first."""
    sigmas = numpy.asarray(sigmas, dtype=numpy.float64)
    if sigmas.ndim != 1:
        raise ValueError(f"sigmas must be 1-D, got shape {sigmas.shape}")
    v = valid_x if n_valid is None else valid_x[:n_valid]
    ll = log_likelihood(v, samples, sigmas, **kwargs)
    curve = numpy.asarray(backend.to_numpy(ll)).mean(axis=1)
    return float(sigmas[int(numpy.argmax(curve))]), curve


def evaluate(samples, test_x, valid_x, sigmas=DEFAULT_SIGMAS, n_valid=1000, progress=True,
             **kwargs):
    """Select sigma on ``valid_x[:n_valid]``, then score ``test_x`` with it.

    Returns a dict: sigma, ll_mean, ll_se (ddof=1, see :func:`mean_and_se`),
    sigmas and valid_ll (the validation curve), sigma_at_edge (True when the
    best sigma is an end of the grid: widen it), n_samples, n_test, n_valid,
    seconds. Extra keyword arguments go to :func:`log_likelihood`."""
    t0 = time.perf_counter()
    sigmas = numpy.asarray(sigmas, dtype=numpy.float64)
    sigma, curve = select_sigma(valid_x, samples, sigmas, n_valid, progress=progress, **kwargs)
    ll = log_likelihood(test_x, samples, sigma, progress=progress, **kwargs)
    mean, se = mean_and_se(ll)
    k = int(numpy.argmax(curve))
    return {"sigma": sigma, "ll_mean": mean, "ll_se": se, "sigmas": sigmas, "valid_ll": curve,
            "sigma_at_edge": len(sigmas) > 1 and k in (0, len(sigmas) - 1),
            "n_samples": int(samples.shape[0]), "n_test": int(test_x.shape[0]),
            "n_valid": int(min(len(valid_x), n_valid or len(valid_x))),
            "seconds": time.perf_counter() - t0}
