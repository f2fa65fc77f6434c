"""The products (gemm.pyx) and the pool they are split over (pool.pyx), and
the BLAS behind them (npgan._kernels.blas): equal to NumPy's matmul in float64
within the tolerances below, the same bits split or not, in threads and in
forked children.

Tolerances we promise, compiled vs reference: float64 1e-12 relative (GEMMs
sum in a different order than NumPy's matmul), float32 2e-5 relative + 2e-6
absolute. Tests take the ``gemm_kernel`` / ``pool_kernel`` fixtures
(conftest.py; skipped with NPGAN_NO_KERNELS=1 or when the extension is not built).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from npgan import functional as F, settings
from npgan import _kernels as K
from npgan._kernels import blas_lib as B
from npgan.gradcheck import gradcheck

from conftest import fork_child, wait_or_kill

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def rand(*shape, dtype=np.float64, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def close(actual, desired, dtype, what=""):
    assert actual.dtype == dtype, what
    assert actual.shape == desired.shape, what
    np.testing.assert_allclose(actual, desired, err_msg=what, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_takes_c_and_f_layouts_without_copies(gemm_kernel, dtype):
    a, b = rand(7, 5, dtype=dtype), rand(5, 3, dtype=dtype, seed=1)
    for A in (a, np.asfortranarray(a), a.T.copy().T):
        for B in (b, np.asfortranarray(b)):
            c = np.empty((7, 3), dtype)
            assert gemm_kernel.gemm(A, B, c) is c
            close(c, a @ b, dtype)
    c0 = rand(7, 3, dtype=dtype, seed=2)
    c = c0.copy()
    gemm_kernel.gemm(a, b, c, beta=0.5)                 # accumulate: c = a b + 0.5 c
    close(c, a @ b + 0.5 * c0, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 256, 300), (300, 256, 64), (37, 1100, 203)])
def test_gemm_split_over_threads_equals_one_call(gemm_kernel, pool_kernel, dtype, shape):
    """Big products are cut into bands of columns (or rows) run on the
    module's threads; every layout and beta must give the product."""
    m, k, n = shape                                           # m*n*k >= 2**22: split
    a, b = rand(m, k, dtype=dtype), rand(k, n, dtype=dtype, seed=1)
    c0 = rand(m, n, dtype=dtype, seed=2)
    truth = a.astype(np.float64) @ b.astype(np.float64)
    threads = pool_kernel.split_threads()
    # sums of k products of unit normals: float32 rounding grows with k
    tol = TOL[dtype] if dtype == np.float64 else dict(rtol=2e-5, atol=1e-6 * k)
    for A in (a, np.asfortranarray(a)):
        for B in (b, np.asfortranarray(b)):
            for beta in (0.0, 1.0):
                got = c0.copy()
                gemm_kernel.gemm(A, B, got, beta)
                np.testing.assert_allclose(got, truth + beta * c0, err_msg=f"{shape} beta {beta}",
                                           **tol)
    assert pool_kernel.split_threads() == threads           # BLAS's thread count restored


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spin_us", [0.0, 100.0])
def test_gemm2_computes_two_independent_products(gemm_kernel, pool_kernel, dtype, spin_us):
    """A linear layer's backward pair (g W^T, x^T g) at once, on two threads
    when both are big: each equals its own product (and gemm's), whatever the
    pool threads do while idle (block at once, or spin first)."""
    prev = pool_kernel.set_spin(spin_us)
    try:
        for n, i, o in [(100, 300, 200), (37, 1100, 203), (5, 7, 3)]:   # big pairs, and a small one
            g, w, x = rand(n, o, dtype=dtype), rand(i, o, dtype=dtype, seed=1), rand(n, i, dtype=dtype, seed=2)
            gx, gw = np.empty((n, i), dtype), np.empty((i, o), dtype)
            assert gemm_kernel.gemm2(g, w.T, gx, x.T, g, gw) == (gx, gw)
            tol = TOL[dtype] if dtype == np.float64 else dict(rtol=2e-5, atol=1e-6 * max(n, o))
            np.testing.assert_allclose(gx, g.astype(np.float64) @ w.T.astype(np.float64), **tol)
            np.testing.assert_allclose(gw, x.T.astype(np.float64) @ g.astype(np.float64), **tol)
            one = np.empty_like(gw)
            np.testing.assert_allclose(gemm_kernel.gemm(x.T, g, one), gw, **tol)
    finally:
        pool_kernel.set_spin(prev)


def test_gemm2_checks_both_products(gemm_kernel):
    a, b = rand(4, 3, dtype=np.float32), rand(3, 2, dtype=np.float32)
    ok = (a, b, np.empty((4, 2), np.float32))
    with pytest.raises(ValueError, match="do not match"):
        gemm_kernel.gemm2(*ok, a, b, np.empty((4, 3), np.float32))
    with pytest.raises(TypeError, match="one dtype"):
        gemm_kernel.gemm2(a.astype(np.float64), b, np.empty((4, 2), np.float32), *ok)
    with pytest.raises(ValueError, match="empty"):
        gemm_kernel.gemm2(*ok, a[:0], b, np.empty((0, 2), np.float32))


def test_blas_choice_is_checked_and_mkl_missing_is_explained(gemm_kernel, monkeypatch):
    with pytest.raises(ValueError, match="'scipy' or 'mkl'"):
        K.use_blas("openblas")
    with pytest.raises(ValueError, match="both addresses"):
        gemm_kernel.set_gemm(1, 0)
    monkeypatch.setattr(B, "_state", {"name": "scipy", "mkl": None})
    monkeypatch.setattr(B, "find_mkl", lambda: None)
    with settings.override(blas="scipy"):
        with pytest.raises(RuntimeError, match=r"npgan\[mkl\]"):
            K.use_blas("mkl")
        assert K.blas() == "scipy" and settings.get("blas") == "scipy"


def test_blas_reports_the_default_before_any_product(gemm_kernel):
    """In a fresh process, blas() asked first names the GEMM the first product
    will use (it once said "scipy" until something had loaded the layers)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NPGAN_BLAS", "NPGAN_GEMM_SPLIT")}
    out = subprocess.run([sys.executable, "-c", "import npgan._kernels as K; print(K.blas())"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    want = "npgan" if gemm_kernel.own_sgemm_supported() else "scipy"
    assert out.split()[0] == want, out


def test_mkl_products_equal_the_reference(gemm_kernel):
    """With MKL installed (pip install "npgan[mkl]"): the layers' GEMMs and a
    float64 gradcheck through them; then back to SciPy's BLAS."""
    if B.find_mkl() is None:
        pytest.skip("MKL (libmkl_rt) not installed")
    prev = K.use_blas("mkl")
    try:
        assert K.blas().startswith("mkl")
        for dtype in DTYPES:
            a, b = rand(100, 300, dtype=dtype), rand(300, 1200, dtype=dtype, seed=1)
            tol = TOL[dtype] if dtype == np.float64 else dict(rtol=2e-5, atol=3e-4)
            np.testing.assert_allclose(gemm_kernel.gemm(a, b, np.empty((100, 1200), dtype)),
                                       a.astype(np.float64) @ b.astype(np.float64), **tol)
        x, w, bias = rand(6, 5), rand(5, 4, seed=1), rand(4, seed=2)
        assert gradcheck(lambda x, w, b: F.linear(x, w, b, activation="sigmoid"), x, w, bias)
    finally:
        K.use_blas(prev)
    assert K.blas().startswith(prev)


def test_gemm_split_follows_the_blas_thread_setting(pool_kernel):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if pool_kernel.split_threads() < 2:
        pytest.skip("one BLAS thread (or thread functions not found): nothing is split")
    with threadpoolctl.threadpool_limits(1):
        assert pool_kernel.split_threads() == 1
    assert pool_kernel.split_threads() >= 2
    with settings.override(blas_threads=1):              # npgan's own setting, the same way
        assert pool_kernel.split_threads() == 1
    assert pool_kernel.split_threads() >= 2


def test_gemm_from_several_python_threads_at_once(gemm_kernel):
    """Callers that find the workers busy compute alone; results stay exact."""
    import threading
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(24):
        m, k, n = (int(v) for v in rng.integers(16, 300, 3))
        k = max(k, (1 << 22) // (m * n) + 1) if rng.random() < 0.7 else k   # most are split
        a, b = rand(m, k, dtype=np.float32, seed=m), rand(k, n, dtype=np.float32, seed=n)
        if rng.random() < 0.5:
            a = np.asfortranarray(a)
        cases.append((a, b, a.astype(np.float64) @ b))
    errors = []

    def work(offset):
        try:
            for i in range(len(cases)):
                a, b, want = cases[(i + offset) % len(cases)]
                c = np.empty(want.shape, np.float32)
                gemm_kernel.gemm(a, b, c)
                np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-5 * a.shape[1])
        except Exception as e:                                  # pragma: no cover
            errors.append(e)
    threads = [threading.Thread(target=work, args=(o,)) for o in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("chunks_per_thread", [1, 3, 8])
def test_gemm_split_into_more_bands_than_threads(gemm_kernel, pool_kernel, chunks_per_thread):
    a, b = rand(50, 300, dtype=np.float64), rand(300, 400, dtype=np.float64, seed=1)
    prev = pool_kernel.set_split(True, chunks_per_thread)
    try:
        c = np.empty((50, 400))
        gemm_kernel.gemm(a, b, c)
    finally:
        pool_kernel.set_split(*prev)
    close(c, a @ b, np.float64)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_gemm_split_works_in_a_forked_child(gemm_kernel):
    """Worker threads do not survive fork(): the child starts its own."""
    a, b = rand(64, 256, dtype=np.float32), rand(256, 300, dtype=np.float32, seed=1)
    c = np.empty((64, 300), np.float32)
    gemm_kernel.gemm(a, b, c)                               # workers started in the parent
    pid = os.fork()
    if pid == 0:                                              # child: never return into pytest
        import signal
        signal.alarm(20)
        try:
            d = np.empty_like(c)
            gemm_kernel.gemm(a, b, d)
            os._exit(0 if np.array_equal(c, d) else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def test_gemm_refuses_what_blas_cannot_take(gemm_kernel):
    a, b = rand(6, 4), rand(4, 3)
    with pytest.raises(ValueError, match="contiguous"):
        gemm_kernel.gemm(a[::2], b, np.empty((3, 3)))
    with pytest.raises(ValueError, match="output must be C-contiguous"):
        gemm_kernel.gemm(a, b, np.empty((3, 6)).T)
    with pytest.raises(ValueError, match="do not match"):
        gemm_kernel.gemm(a, b, np.empty((6, 4)))
    with pytest.raises(TypeError, match="one dtype"):
        gemm_kernel.gemm(a.astype(np.float32), b, np.empty((6, 3)))
    with pytest.raises(ValueError, match="empty batch"):
        gemm_kernel.gemm(np.empty((0, 4)), b, np.empty((0, 3)))


# ----------------------------------------------------------------------------- linear

@pytest.fixture
def split_gemm(gemm_kernel, pool_kernel):
    """(a, b, c = a @ b float32, truth float64) with BLAS at 2 threads and the
    product just split on the pool (skips where nothing is split)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    a, b = rand(512, 384, dtype=np.float32), rand(384, 512, dtype=np.float32, seed=1)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        if pool_kernel.split_threads() < 2:
            pytest.skip("BLAS thread functions not found: nothing is split")
        c = np.empty((512, 512), np.float32)
        gemm_kernel.gemm(a, b, c)                        # the pool has run here
        yield a, b, c, a.astype(np.float64) @ b.astype(np.float64)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_pool_works_in_a_child_forked_after_it_ran(gemm_kernel, pool_kernel, split_gemm):
    """The pool's workers do not survive fork(): a child of a process whose
    pool has run must start its own, not wait for threads that are gone."""
    a, b, c, truth = split_gemm

    def child():
        got = np.empty_like(c)
        gemm_kernel.gemm(a, b, got)                      # split on the child's own pool
        ok = pool_kernel.split_threads() == 2 and np.array_equal(got, c)
        return 0 if ok else 2

    code = wait_or_kill(fork_child(child))
    assert code is not None, "the forked child hung in the pool"
    assert code == 0, f"the forked child's product is wrong (exit code {code})"
    np.testing.assert_allclose(c, truth, rtol=2e-5, atol=1e-6 * 384)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_during_split_gemms_leaves_the_child_a_working_pool(gemm_kernel, pool_kernel, split_gemm):
    """Forks while another thread runs split GEMMs back to back (so most land
    inside a job, BLAS at one thread, the pool held): each child runs its own
    split GEMM with BLAS's thread count back (2), the same bits, no hang."""
    import threading
    a, b, c, _ = split_gemm
    stop = threading.Event()

    def busy():
        out = np.empty_like(c)
        while not stop.is_set():
            gemm_kernel.gemm(a, b, out)

    def child():
        if pool_kernel.split_threads() != 2:
            return 3
        got = np.empty_like(c)
        gemm_kernel.gemm(a, b, got)
        return 0 if np.array_equal(got, c) and pool_kernel.split_threads() == 2 else 2

    t = threading.Thread(target=busy, daemon=True)
    t.start()
    try:
        codes = [wait_or_kill(fork_child(child)) for _ in range(12)]
    finally:
        stop.set()
        t.join()
    assert pool_kernel.split_threads() == 2
    assert codes == [0] * len(codes), f"children's exit codes (None: hung): {codes}"



def test_the_pool_follows_scipys_blas_whichever_module_loads_first(gemm_kernel):
    """A fresh process that loads the pool before anything else: the thread
    count it follows is SciPy's OpenBLAS's (which the GEMMs call), not NumPy's
    (the only one loaded at that moment): NumPy's at 1 thread changes nothing."""
    pytest.importorskip("threadpoolctl")
    code = ("from npgan import _kernels as K\n"
            "pool = K.load('pool')\n"
            "import scipy.linalg  # SciPy's OpenBLAS, loaded now if the pool did not\n"
            "from threadpoolctl import ThreadpoolController\n"
            "libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == 'blas']\n"
            "numpys = [c for c in libs if 'numpy' in c.filepath]\n"
            "if len(libs) < 2 or not numpys or pool.split_threads() < 2:\n"
            "    print('skip')\n"
            "else:\n"
            "    numpys[0].set_num_threads(1)\n"
            "    print('ok' if pool.split_threads() == 2 else 'numpy')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", PYTHONPATH=root)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    if r.stdout.strip() == "skip":
        pytest.skip("one BLAS library in the process (or one thread): nothing to tell apart")
    assert r.stdout.strip() == "ok", "the pool follows NumPy's BLAS"
