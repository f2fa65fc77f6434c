"""Compiled kernels (Cython), their CUDA and NumPy counterparts, and the switch between them.

Each ``<name>.pyx`` here is built into ``npgan._kernels.<name>``:

- ``pool``: the worker threads every kernel splits its work over (pool.h);
- ``gemm``: products through BLAS or npgan's own sgemm (sgemm.h), split over the pool;
- ``activations``, ``layers`` (linear's bias/activation passes), ``maxout``,
  ``dropout``, ``update`` (SGD, sums), ``parzen_kernel``: the ops, with their
  float32 loops, exp and sigmoid in ``simd.h`` (``common.pxd``: their shared checks).

This package is the ops' front: ``elementwise`` (activations) and
``layer_ops`` (linear, maxout, dropout, SGD) give each op its tiers
(compiled, CUDA, ``reference.py``) through ``loader``; ``blas_lib`` finds and
switches the BLAS. Settings (kernels on/off, BLAS, threads) come from
``npgan.settings``.
"""
from .. import settings
from . import blas_lib as _blas
from . import loader as _loader
from .elementwise import (log_sigmoid_backward, log_sigmoid_forward, relu_backward,  # noqa: F401
                          relu_forward, sigmoid_backward, sigmoid_forward, softplus_backward,
                          softplus_forward)
from .layer_ops import (ACTIVATIONS, add, all_finite, check_activation, check_dropout_p, dropout_backward,  # noqa: F401
                        dropout_forward, linear_backward, linear_forward, maxout_backward,
                        maxout_forward, sgd_momentum_, uniform_draws)
from .loader import _cache, available, cuda_kernels, disabled, load  # noqa: F401

BLAS_NAMES = _blas.BLAS_NAMES


def _setup_pool(pool):
    """On first load: the pool reads the thread count of SciPy's OpenBLAS
    (loaded with the gemm module first: before it, only NumPy's OpenBLAS
    would be found; without it, no pool threads), splits work unless
    ``gemm_split`` is off, spins ``pool_spin_us``."""
    if load("gemm") is not None:
        pool.set_blas_threading(*_blas.thread_functions())
    pool.set_split(settings.get("gemm_split"))
    pool.set_spin(settings.get("pool_spin_us"))
    _blas.apply_threads()


def _setup_gemm(gemm):
    """On first load: the pool set up, the BLAS of the ``blas`` setting."""
    load("pool")
    _blas.select(gemm, settings.get("blas"))


def _setup_user(module):
    """A kernel module that uses the pool or gemm: set those up first."""
    load("gemm")


_loader._on_load.update(pool=_setup_pool, gemm=_setup_gemm, layers=_setup_user, maxout=_setup_user,
                        dropout=_setup_user, update=_setup_user,
                        parzen_kernel=lambda module: _blas.apply_threads())


@settings.on_change
def _apply(changed):
    """Apply changed settings to the compiled modules already loaded."""
    pool, gemm = _cache.get("pool"), _cache.get("gemm")
    if pool is not None and "gemm_split" in changed:
        pool.set_split(changed["gemm_split"])
    if pool is not None and "pool_spin_us" in changed:
        pool.set_spin(changed["pool_spin_us"])
    if gemm is not None and "blas" in changed:
        _blas.select(gemm, changed["blas"])
    if "blas_threads" in changed:
        _blas.set_threads(changed["blas_threads"])


def use_blas(name):
    """Compute the layers' GEMMs with "npgan" (npgan's own float32 kernel,
    AVX-512 only; the default there), "scipy" (SciPy's BLAS; the default
    elsewhere) or "mkl" (Intel MKL from libmkl_rt: ``pip install "npgan[mkl]"``).
    Raises ValueError for another name and RuntimeError, saying what to do,
    when the machine lacks AVX-512 ("npgan") or MKL cannot be found or loaded
    ("mkl"). The ``blas`` setting (``settings.configure(blas=name)``). Returns
    the previous name."""
    prev = _blas._state["name"]
    settings.configure(blas=name)
    return prev


def blas():
    """Which GEMM computes the layers' products now: "npgan (AVX-512; float64:
    scipy)", "scipy", "mkl (version)", or "numpy ..." without the kernels."""
    return _blas.describe(load("gemm"))      # the first load sets the default (NPGAN_BLAS)
