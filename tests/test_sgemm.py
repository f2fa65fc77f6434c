"""npgan's own float32 GEMM (npgan/_kernels/sgemm.h, AVX-512), the default
for the layers' float32 products where the CPU has AVX-512.

Its promise is exact, not just close: every element of C is the chain of
FMAs over k in order, restarted at each block of KC and added to C block by
block, whatever tile, edge or thread band the element falls in. The tests
emulate that chain in NumPy (an FMA of float32 operands is a float64 product,
exact, plus the float32 accumulator, rounded once to float32; the double
rounding this could in principle differ by never occurs on this fixed data)
and compare bit for bit; and against a float64 product within float32
rounding on shapes that cross every edge of the blocking. Skipped where the
machine lacks AVX-512 or the kernels are off (BLAS then computes everything;
tests/test_gemm.py covers that path).
"""
import numpy as np
import pytest

from npgan import _kernels as K, settings
from npgan._kernels import blas_lib as B


@pytest.fixture
def own(gemm_kernel):
    """The gemm module with npgan's own sgemm switched on (restored after)."""
    if not gemm_kernel.own_sgemm_supported():
        pytest.skip("no AVX-512 on this machine: npgan's own sgemm is not used here")
    with settings.override(blas="npgan"):
        assert gemm_kernel.own_sgemm_active()
        yield gemm_kernel


def rand32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def layout(a, order):
    return np.asfortranarray(a) if order == "F" else np.ascontiguousarray(a)


def fma_chain(a, b, c0=None, kc=256):
    """C the way sgemm.h computes it (see the module docstring)."""
    m, k = a.shape
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out = None if c0 is None else c0.copy()
    for p0 in range(0, k, kc):
        acc = np.zeros((m, b.shape[1]), np.float32)
        for p in range(p0, min(k, p0 + kc)):
            acc = (a64[:, p, None] * b64[p] + acc).astype(np.float32)
        out = acc if out is None else out + acc
    return out


@pytest.mark.parametrize("orders", ["CC", "CF", "FC", "FF"])
@pytest.mark.parametrize("m, k, n", [(10, 40, 32), (7, 300, 45), (23, 257, 16), (201, 30, 70)])
def test_own_sgemm_is_the_fma_chain_bit_for_bit(own, orders, m, k, n):
    """Full and partial tiles (m vs MR = 10, n vs NR = 32 and the 16-wide half
    tile), k across a KC block, more rows than a row block (MC = 200), every
    layout, beta 0 and 1."""
    mr, nr, kc, mc = own.own_sgemm_blocking()
    assert (mr, nr, kc, mc) == (10, 32, 256, 200)         # the shapes above are chosen for these
    a, b = rand32(m, k), rand32(k, n, seed=1)
    A, B = layout(a, orders[0]), layout(b, orders[1])
    c = np.full((m, n), np.nan, np.float32)                # beta 0: C is never read
    own.gemm(A, B, c)
    np.testing.assert_array_equal(c, fma_chain(a, b, kc=kc))
    c0 = rand32(m, n, seed=2)
    c = c0.copy()
    own.gemm(A, B, c, 1.0)
    np.testing.assert_array_equal(c, fma_chain(a, b, c0, kc=kc))


def test_own_sgemm_split_over_threads_gives_the_same_bits(own):
    """A product big enough to be cut into column bands (and a tall one cut
    into row bands) on the pool: still the chain, element for element."""
    for m, k, n in [(100, 300, 200), (420, 100, 100)]:     # m*n*k >= 2**22: split
        a, b = rand32(m, k), rand32(k, n, seed=1)
        c = np.empty((m, n), np.float32)
        own.gemm(a, b, c)
        np.testing.assert_array_equal(c, fma_chain(a, b))


@pytest.mark.parametrize("m, k, n", [(1, 1, 16), (3, 1000, 17), (100, 784, 1200), (450, 20, 100),
                                     (199, 513, 47), (11, 255, 31), (2100, 8, 20)])
def test_own_sgemm_equals_the_float64_product(own, m, k, n):
    """Against float64 within float32 rounding of k products (relative to
    |A| |B|); (2100, ...) is taller than OWN_MAX_M and goes to BLAS."""
    a, b = rand32(m, k), rand32(k, n, seed=1)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    truth = a.astype(np.float64) @ b.astype(np.float64)
    for orders in ("CC", "CF", "FC", "FF"):
        c = np.empty((m, n), np.float32)
        own.gemm(layout(a, orders[0]), layout(b, orders[1]), c)
        assert np.max(np.abs(c - truth) / scale) < 4 * k * 2.0 ** -24, orders


def test_own_sgemm_propagates_nan_and_inf(own):
    a, b = rand32(12, 40), rand32(40, 33, seed=1)
    a[3, 5], b[7, 20] = np.nan, np.inf
    c = np.empty((12, 33), np.float32)
    own.gemm(a, b, c)
    assert np.isnan(c[3]).all()                            # the NaN's row
    col = c[np.arange(12) != 3, 20]
    assert np.all(np.isinf(col) | np.isnan(col))           # inf * (+-x) summed
    rest = np.delete(np.delete(c, 3, axis=0), 20, axis=1)
    assert np.isfinite(rest).all()


def test_own_sgemm_float64_and_narrow_products_still_go_to_blas(own):
    """float64 (gradient checks) and products under 16 columns (D's output
    layer) are BLAS's: float64 equal to NumPy within 1e-12."""
    a, b = np.random.default_rng(0).standard_normal((30, 50)), np.random.default_rng(1).standard_normal((50, 40))
    c = np.empty((30, 40))
    np.testing.assert_allclose(own.gemm(a, b, c), a @ b, rtol=1e-12, atol=1e-13)
    a32, b32 = rand32(100, 240), rand32(240, 1, seed=1)
    c32 = np.empty((100, 1), np.float32)
    np.testing.assert_allclose(own.gemm(a32, b32, c32), a32.astype(np.float64) @ b32, rtol=1e-5,
                               atol=1e-5)


def test_without_the_pool_blas_computes_everything(own):
    """set_split(False) (NPGAN_GEMM_SPLIT=0) leaves the threading to BLAS, so
    the unthreaded own kernel steps aside, and blas() says so."""
    with settings.override(gemm_split=False):
        assert not own.own_sgemm_active()
        assert K.blas().startswith("scipy")
    assert own.own_sgemm_active() and K.blas().startswith("npgan")


def test_choosing_npgan_without_avx512_is_explained():
    class NoAVX512:
        def own_sgemm_supported(self):
            return False
    with pytest.raises(RuntimeError, match="AVX-512"):
        B.select(NoAVX512(), "npgan")
    assert B.default_name(NoAVX512()) == "scipy"


def test_own_sgemm_frees_a_threads_buffer_when_it_exits(own):
    """Each thread packs into a buffer of its own (236 KB), made on the
    thread's first product and freed when it exits: 300 short-lived threads
    each get the right product. (The memory those threads leave behind is
    measured, not asserted, by benchmarks/bench_io.py.)"""
    import threading
    a, b = rand32(200, 256), rand32(256, 40, seed=1)     # fills the whole buffer (one block)
    want = np.empty((200, 40), np.float32)
    own.gemm(a, b, want)

    def work(out):
        c = np.empty((200, 40), np.float32)
        own.gemm(a, b, c)                     # under the split size: on this thread, its buffer
        out.append(np.array_equal(c, want))
    results = []
    for _ in range(300):
        t = threading.Thread(target=work, args=(results,))
        t.start()
        t.join()
    assert all(results) and len(results) == 300
