import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from scipy.special import logsumexp

from npgan import _kernels, settings
from npgan.metrics import parzen
from conftest import fork_child, wait_or_kill

HAVE_KERNEL = _kernels.load("parzen_kernel") is not None
# every numerical test runs on both paths; the compiled one only where it is built
PATHS = [pytest.param(False, id="numpy"),
         pytest.param(True, id="kernel", marks=pytest.mark.skipif(
             not HAVE_KERNEL, reason="parzen_kernel not built or disabled (NPGAN_NO_KERNELS)"))]


def brute_force(x, s, sigmas):
    """float64, one pair at a time: (len(sigmas), N)."""
    x, s = np.asarray(x, np.float64), np.asarray(s, np.float64)
    n, d = x.shape
    out = np.empty((len(sigmas), n))
    for k, sig in enumerate(sigmas):
        for i in range(n):
            a = [-np.sum((x[i] - s[j]) ** 2) / (2 * sig ** 2) for j in range(len(s))]
            out[k, i] = logsumexp(a) - math.log(len(s)) - d / 2 * math.log(2 * math.pi * sig ** 2)
    return out


def sqnorms(a):
    return np.sum(np.asarray(a, np.float64) ** 2, axis=1)


def exact_ll(x, s, sigmas):
    """(K, N) float64 reference from the differences (no cancellation), for
    any sigma whose 1/(2 sigma^2) is finite: -inf where log p is below
    float64's range."""
    x, s = np.asarray(x, np.float64), np.asarray(s, np.float64)
    d = np.einsum("ijk,ijk->ij", x[:, None] - s[None], x[:, None] - s[None])
    out = []
    for sig in np.atleast_1d(sigmas):
        c = 0.5 / sig / sig
        with np.errstate(over="ignore", invalid="ignore"):
            lse = logsumexp(-c * d, axis=1)
        out.append(lse - math.log(len(s)) - x.shape[1] / 2 * (math.log(2 * math.pi)
                                                                + 2 * math.log(sig)))
    return np.array(out)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(42)
    x = rng.random((23, 17))
    s = rng.random((41, 17))
    sig = np.array([0.08, 0.15, 0.3, 0.7, 2.0])
    return x, s, sig, brute_force(x, s, sig)


@pytest.mark.parametrize("kernel", PATHS)
def test_matches_brute_force(data, kernel):
    x, s, sig, ref = data
    out = parzen.log_likelihood(x, s, sig, use_kernel=kernel)
    assert out.shape == (5, 23) and out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-10)
    for k in range(len(sig)):                               # scalar sigma -> (N,)
        one = parzen.log_likelihood(x, s, float(sig[k]), use_kernel=kernel)
        assert one.shape == (23,)
        np.testing.assert_allclose(one, ref[k], rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("kernel", PATHS)
def test_larger_dim_and_far_points(kernel):
    """784-d like MNIST, with clusters far apart so the running max and the
    skipped chunks matter (samples in several blocks, the nearest ones last)."""
    rng = np.random.default_rng(1)
    x = rng.random((9, 784))
    s = np.concatenate([rng.random((150, 784)) + 3.0, x[:3] + 0.01 * rng.random((3, 784))])
    sig = np.array([0.1, 0.2, 1.0, 5.0])
    ref = brute_force(x, s, sig)
    out = parzen.log_likelihood(x, s, sig, block_size=(4, 64), use_kernel=kernel)
    np.testing.assert_allclose(out, ref, rtol=1e-11, atol=1e-8)


@pytest.mark.parametrize("kernel", PATHS)
@pytest.mark.parametrize("block", [1, 7, 13, (7, 13), (13, 7), (1000, 1000)])
def test_block_size_invariance(data, kernel, block):
    x, s, sig, ref = data
    out = parzen.log_likelihood(x, s, sig, block_size=block, use_kernel=kernel)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("kernel", PATHS)
def test_float32_close_to_float64(kernel):
    """float32 distances from the GEMM formula: each log p(x_i) within
    parzen.error_bound(||x_i||^2, max ||s||^2, D, sigma, float32) of float64's
    (the exp polynomial and the skipped chunks add < 1e-6 relative)."""
    rng = np.random.default_rng(2)
    x = rng.random((50, 784)) * (rng.random((50, 784)) < 0.2)
    s = rng.random((300, 784)) * (rng.random((300, 784)) < 0.2)
    sig = parzen.DEFAULT_SIGMAS
    x32, s32 = x.astype(np.float32), s.astype(np.float32)
    assert parzen.distance_method(x32, s32, sig) == "float32"
    ref = exact_ll(x32, s32, sig)
    out = parzen.log_likelihood(x32, s32, sig, block_size=(16, 100), use_kernel=kernel)
    assert out.dtype == np.float64
    bound = parzen.error_bound(sqnorms(x32)[None, :], sqnorms(s32).max(), 784, sig[:, None],
                               np.float32)
    assert np.all(np.abs(out - ref) <= bound + 1e-6 * np.abs(ref))
    # mixed dtypes compute in float64
    mixed = parzen.log_likelihood(x32, s, sig, use_kernel=kernel)
    ref32 = parzen.log_likelihood(x32.astype(np.float64), s, sig, use_kernel=False)
    np.testing.assert_allclose(mixed, ref32, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kernel", PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_closed_form_one_sample(kernel, dtype):
    """M = 1, N = 1: log p(x) = log N(x; s, sigma^2 I)."""
    rng = np.random.default_rng(3)
    x, s, sigma = rng.random((1, 5)), rng.random((1, 5)), 0.37
    expect = (-np.sum((x - s) ** 2) / (2 * sigma ** 2) - 2.5 * math.log(2 * math.pi * sigma ** 2))
    got = parzen.log_likelihood(x.astype(dtype), s.astype(dtype), sigma, use_kernel=kernel)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, [expect], rtol=tol, atol=tol)
    # identical point and sample: only the normalising constant remains
    got = parzen.log_likelihood(s, s, sigma, use_kernel=kernel)
    np.testing.assert_allclose(got, [-2.5 * math.log(2 * math.pi * sigma ** 2)], rtol=1e-12)


@pytest.mark.parametrize("kernel", PATHS)
def test_non_contiguous_inputs(data, kernel):
    x, s, sig, ref = data
    xf, sf = np.asfortranarray(x), np.asfortranarray(s)
    np.testing.assert_allclose(parzen.log_likelihood(xf, sf, sig, use_kernel=kernel), ref,
                               rtol=1e-12, atol=1e-10)
    wide = np.zeros((23, 34))
    wide[:, ::2] = x                                       # strided view
    np.testing.assert_allclose(parzen.log_likelihood(wide[:, ::2], s[::-1], sig, use_kernel=kernel),
                               ref, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("kernel", PATHS)
def test_threads_agree(data, kernel):
    x, s, sig, ref = data
    for threads in (1, 2, 3):
        out = parzen.log_likelihood(x, s, sig, block_size=(5, 9), threads=threads,
                                    use_kernel=kernel)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-10)


def test_errors():
    x, s = np.zeros((4, 3)), np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 2\)"):
        parzen.log_likelihood(x, np.zeros((5, 2)), 0.1)
    with pytest.raises(ValueError, match="2-D"):
        parzen.log_likelihood(np.zeros(3), s, 0.1)
    with pytest.raises(ValueError, match="empty"):
        parzen.log_likelihood(np.zeros((0, 3)), s, 0.1)
    with pytest.raises(ValueError, match="empty"):
        parzen.log_likelihood(x, np.zeros((0, 3)), 0.1)
    with pytest.raises(ValueError, match="empty"):
        parzen.log_likelihood(np.zeros((4, 0)), np.zeros((5, 0)), 0.1)
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="x contains 1 NaN"):
        parzen.log_likelihood(bad, s, 0.1)
    bad = s.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="samples contains 1 NaN or infinite"):
        parzen.log_likelihood(x, bad, 0.1)
    for sig in (0.0, -1.0, np.nan, np.inf, [0.1, 0.0], [], [[0.1]]):
        with pytest.raises(ValueError, match="sigma"):
            parzen.log_likelihood(x, s, sig)
    with pytest.raises(ValueError, match="block"):
        parzen.log_likelihood(x, s, 0.1, block_size=0)
    with pytest.raises(TypeError, match="real"):
        parzen.log_likelihood(x.astype(complex), s, 0.1)
    with pytest.raises(ValueError, match="empty"):
        parzen.mean_and_se([])


@pytest.mark.skipif(HAVE_KERNEL, reason="the kernel is built")
def test_use_kernel_true_without_kernel():
    with pytest.raises(RuntimeError, match="not available"):
        parzen.log_likelihood(np.zeros((2, 2)), np.zeros((2, 2)), 0.1, use_kernel=True)


def test_kernel_disabled_by_env(monkeypatch, data):
    monkeypatch.setattr(settings, "_values", dict(settings._values, kernels=False))
    x, s, sig, ref = data
    np.testing.assert_allclose(parzen.log_likelihood(x, s, sig), ref, rtol=1e-12, atol=1e-10)
    with pytest.raises(RuntimeError):
        parzen.log_likelihood(x, s, sig, use_kernel=True)


def test_mean_and_se():
    ll = np.array([1.0, 2.0, 3.0, 6.0])
    m, se = parzen.mean_and_se(ll)
    assert m == 3.0 and se == pytest.approx(np.std(ll, ddof=1) / 2)
    m, se = parzen.mean_and_se(np.stack([ll, 2 * ll]))
    np.testing.assert_allclose(m, [3, 6])
    assert parzen.mean_and_se([5.0]) == (5.0, 0.0)


def test_select_sigma_and_evaluate(capsys):
    rng = np.random.default_rng(5)
    centres = rng.random((4, 10))
    def draw(n):
        return centres[rng.integers(0, 4, n)] + 0.2 * rng.standard_normal((n, 10))
    samples, valid, test = draw(400), draw(60), draw(50)
    sig, curve = parzen.select_sigma(valid, samples, n_valid=40)
    assert curve.shape == (10,) and sig == parzen.DEFAULT_SIGMAS[np.argmax(curve)]
    ref = parzen.log_likelihood(valid[:40], samples, parzen.DEFAULT_SIGMAS).mean(axis=1)
    np.testing.assert_allclose(curve, ref)
    assert 0.1 < sig < 0.5                      # the true width is 0.2
    r = parzen.evaluate(samples, test, valid, n_valid=40, progress=True)
    assert r["sigma"] == sig and r["n_valid"] == 40 and r["n_test"] == 50
    m, se = parzen.mean_and_se(parzen.log_likelihood(test, samples, sig))
    assert r["ll_mean"] == pytest.approx(m) and r["ll_se"] == pytest.approx(se)
    assert not r["sigma_at_edge"]
    assert "parzen" in capsys.readouterr().err    # progress went to stderr
    r = parzen.evaluate(samples, test, valid, sigmas=[0.001, 0.002], progress=False)
    assert r["sigma_at_edge"] and capsys.readouterr().err == ""


def test_no_tqdm_fallback(monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def no_tqdm(name, *a, **k):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    x = np.random.default_rng(0).random((30, 4))
    parzen.log_likelihood(x, x, 0.3, block_size=7, progress=True)
    assert "30/30 rows" in capsys.readouterr().err


def test_samples_cli(tmp_path):
    """python examples/parzen_table.py --samples (the command line that was
    ``python -m npgan.parzen``) on a few real MNIST training images as samples."""
    mnist = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "data", "mnist")
    if not os.path.isdir(mnist):
        pytest.skip("data/mnist not in this checkout")
    from npgan import datasets
    x, _ = datasets.load_mnist("train", data_dir=mnist)
    np.save(tmp_path / "s.npy", x[:500])
    env = dict(os.environ, NPGAN_NO_DOWNLOAD="1")
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
    r = subprocess.run([sys.executable, os.path.join("examples", "parzen_table.py"), "--samples",
                        str(tmp_path / "s.npy"),
                        "--data-dir", mnist, "--n-valid", "100", "--n-test", "200",
                        "--no-progress"], capture_output=True, text=True, env=env, cwd=root,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "test LL =" in r.stdout and "sigma" in r.stdout


def test_benchmark_smoke():
    """benchmarks/bench_parzen.py runs at a tiny size and reports every row."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                        "benchmarks", "bench_parzen.py")
    spec = importlib.util.spec_from_file_location("bench_parzen", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.run(n_samples=64, n_test=48, repeats=1, memory=False, verbose=False)
    names = [r.name for r in rows]
    assert names[0].startswith("float32 GEMM") and rows[0].ratio == 1.0
    assert any("NumPy path" in n for n in names)
    assert all(r.seconds > 0 for r in rows)
    assert ("npgan kernel, 10-sigma sweep" in names) == HAVE_KERNEL
    assert "10000" not in bench.report(rows, 64, 48)
    mib = bench.peak_memory("gemm", 64, 48)
    assert mib is not None and mib >= 0
    # the torch rows agree with npgan
    x, s = bench.make_data(40, 30)
    try:
        ref = parzen.log_likelihood(x, s, bench.SIGMAS)
        np.testing.assert_allclose(bench.torch_parzen(x, s, bench.SIGMAS), ref, rtol=1e-4, atol=1e-2)
    except ImportError:
        pass


@pytest.mark.parametrize("kernel", PATHS)
def test_huge_values(kernel):
    """float32 inputs whose squares would overflow float32 are computed in float64."""
    x = np.array([[0.0, 1e17], [3e16, 0.0]], np.float32)
    s = np.array([[0.0, 1e17]], np.float32)
    got = parzen.log_likelihood(x, s, 1e16, use_kernel=kernel)
    ref = brute_force(x, s, [1e16])[0]
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    with pytest.raises(ValueError, match="overflow"):
        parzen.log_likelihood(x.astype(np.float64) * 1e140, s, 1.0, use_kernel=kernel)


# ----------------------------------------------------------------------------- fork safety

@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_holds_the_blas_lock(data):
    """The child of a fork taken while another thread is inside a threaded
    Parzen call (deterministically: holding its lock) must not inherit the
    lock held: its own threaded call, and the pinning itself, run."""
    pytest.importorskip("threadpoolctl")
    x, s, sig, _ = data
    expect = parzen.log_likelihood(x, s, sig, block_size=(5, 9), threads=2)
    held, release = threading.Event(), threading.Event()

    def hold():
        with parzen._blas_lock:
            held.set()
            release.wait(300)

    def child():
        with parzen._one_blas_thread() as pinned:
            assert pinned
        got = parzen.log_likelihood(x, s, sig, block_size=(5, 9), threads=2)
        return 0 if np.array_equal(got, expect) else 2      # the same computation, same bits

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    try:
        assert held.wait(60)
        code = wait_or_kill(fork_child(child))
    finally:
        release.set()
        t.join()
    assert code is not None, "the forked child hung (a lock inherited held)"
    assert code == 0, f"the forked child failed (exit code {code})"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("tpc_lock_held", [False, True], ids=["", "threadpoolctl-lock-held"])
def test_fork_inside_a_pinned_region_restores_blas_threads_in_the_child(data, tpc_lock_held):
    """A fork while another thread has BLAS pinned to one thread: the child,
    where that thread does not exist, gets BLAS's thread count back (2 here),
    also when a third thread held threadpoolctl's own lock at the fork."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    state = getattr(getattr(threadpoolctl, "OpenBLASController", None), "_SHARED_STATE", None)
    if tpc_lock_held and not hasattr(state, "lock"):
        pytest.skip("this threadpoolctl has no shared OpenBLAS lock")

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    if not blas_threads():
        pytest.skip("threadpoolctl sees no BLAS")
    def child():
        return 0 if parzen._blas_users == [0, None] and min(blas_threads()) == 2 else 3

    codes = []
    # this thread pins BLAS (threadpoolctl lets one thread at a time set OpenBLAS's
    # count: the one that set it last), another thread forks while it is pinned
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with parzen._one_blas_thread():
            assert max(blas_threads()) == 1
            held, release = threading.Event(), threading.Event()

            def hold():
                with state.lock:
                    held.set()
                    release.wait(300)

            holder = threading.Thread(target=hold, daemon=True) if tpc_lock_held else None
            if holder:
                holder.start()
                assert held.wait(60)
            t = threading.Thread(target=lambda: codes.append(wait_or_kill(fork_child(child))))
            t.start()
            t.join()
            release.set()
            if holder:
                holder.join()
        assert min(blas_threads()) == 2
    code = codes[0]
    assert code is not None, "the forked child hung (threadpoolctl's lock inherited held)"
    assert code == 0, f"the forked child's BLAS state is wrong (exit code {code})"


# ----------------------------------------------------------------------------- extreme sigma

def _tolerance(x, s, sig, method):
    """What log_likelihood promises for ``method`` (parzen's module docstring):
    the GEMM formula's error bound at each x_i's norm and the largest sample
    norm, or for the direct path (D + 2) 2^-53 relative of each distance, i.e.
    of c * (min distance) + log M (the softmax-weighted mean of c d_j exceeds
    its min by at most log M); plus the exp polynomial and skipped chunks
    (< 1e-6 relative of log p) and float64 rounding of log p."""
    n, dim = x.shape
    xx, ss = sqnorms(x)[None, :], sqnorms(s).max()
    sig = np.atleast_1d(sig)[:, None]
    if method == "direct":
        d = np.einsum("ijk,ijk->ij", x[:, None] - s[None], x[:, None] - s[None]).min(axis=1)
        bound = 2 * (dim + 2) * 2.0 ** -53 * (0.5 / sig / sig * d[None, :] + math.log(len(s)))
    else:
        bound = parzen.error_bound(xx, ss, dim, sig, method)
    return bound, 1e-6 if method == "float32" else 1e-12


def _check_against_exact(x, s, sig, kernel):
    """log_likelihood is finite and within its promised tolerance of the exact
    value, or (exactly when the exact value leaves float64's range, or
    1/(2 sigma^2) overflows) raises a ValueError that says so."""
    x64, s64 = x.astype(np.float64), s.astype(np.float64)
    if not np.isfinite(0.5 / sig / sig):
        with pytest.raises(ValueError, match="sigma .* too small"):
            parzen.log_likelihood(x, s, sig, use_kernel=kernel)
        return None
    ref = exact_ll(x64, s64, sig)[0]
    if not np.isfinite(ref).all():
        with pytest.raises(ValueError, match="beyond float64's range"):
            parzen.log_likelihood(x, s, sig, use_kernel=kernel)
        return None
    got = parzen.log_likelihood(x, s, sig, use_kernel=kernel)
    assert np.all(np.isfinite(got)), sig
    method = parzen.distance_method(x, s, sig)
    bound, rel = _tolerance(x64, s64, sig, method)
    err = np.abs(got - ref)
    assert np.all(err <= bound[0] + rel * np.abs(ref) + 1e-300), \
        (sig, method, err.max(), bound.max())
    return method


@pytest.mark.parametrize("kernel", PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sigma", [1e-300, 1e-160, 1e-100, 1e-20, 1e-10, 1e-5, 1e-3, 0.3, 1e5,
                                   1e25, 1e100, 1e200, 1e300])
def test_any_positive_sigma_is_exact_or_a_clear_error(kernel, dtype, sigma):
    """MNIST-like points (one an exact copy of a sample, so its log p stays
    finite at tiny sigma) at sigmas from 1e-300 to 1e300 (the float32 path
    gave NaN at sigma <= 1e-20 and >= 1e25)."""
    rng = np.random.default_rng(5)
    s = (rng.random((40, 64)) * (rng.random((40, 64)) < 0.3)).astype(dtype)
    x = np.concatenate([s[:1], rng.random((6, 64)).astype(dtype)])
    _check_against_exact(x, s, sigma, kernel)


@pytest.mark.parametrize("kernel", PATHS)
def test_small_sigma_with_near_points_is_computed_precisely(kernel):
    """sigma = 1e-3 and test points within ~1e-3 of samples, MNIST-like
    norms: float32's GEMM formula was off by 51-72 nats here (its bound is
    ~1e3 nats); now float64, within its bound (~1e-6 nats) of the exact value.
    sigma = 1e-7: even float64's bound is over TOLERANCE: the differences."""
    rng = np.random.default_rng(6)
    s = (rng.random((60, 784)) * (rng.random((60, 784)) < 0.25)).astype(np.float32)
    x = np.clip(s[:20] + rng.uniform(-1e-3, 1e-3, (20, 784)).astype(np.float32), 0, 1)
    assert parzen.error_bound(sqnorms(x).max(), sqnorms(s).max(), 784, 1e-3, np.float32) > 100
    assert _check_against_exact(x, s, 1e-3, kernel) == "float64"
    assert _check_against_exact(x, s, 1e-7, kernel) == "direct"
    assert _check_against_exact(x, s, 0.5, kernel) == "float32"


def test_paper_sigmas_on_mnist_scale_data_stay_float32():
    """The speed of Table 1's evaluation: float32 MNIST-like data (norms up
    to ~230, as MNIST's) over the paper's grid keep float32 distances; a
    sigma 10x smaller does not."""
    rng = np.random.default_rng(7)
    x = (rng.random((100, 784)) < 0.3).astype(np.float32) * 0.9     # ||x||^2 ~ 190 +- 10
    assert 150 < sqnorms(x).max() < 240
    assert parzen.distance_method(x, x[::-1], parzen.DEFAULT_SIGMAS) == "float32"
    assert parzen.distance_method(x, x[::-1], 0.01) == "float64"
    assert parzen.distance_method(x.astype(np.float64), x, 0.1) == "float64"


# ----------------------------------------------------------------------------- the distance helper
def test_gemm_sqdist_both_roundings_and_the_reference_lse():
    """reference.gemm_sqdist (Parzen's and the neighbour metrics' blocks): either
    rounding is within float32's cancellation error of the exact distances,
    clamped at 0; parzen_lse without a progress object is the NumPy path."""
    from npgan._kernels import reference
    rng = np.random.default_rng(7)
    a, b = rng.random((37, 19), dtype=np.float32), rng.random((23, 19), dtype=np.float32)
    b[3] = a[5]                                   # a zero distance: must not come out negative
    exact = np.einsum("ijk,ijk->ij", a[:, None].astype(np.float64) - b[None],
                      a[:, None].astype(np.float64) - b[None])
    a_sq, b_sq = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    for first in (True, False):
        d = reference.gemm_sqdist(a, b, a_sq, b_sq, norms_first=first)
        assert d.dtype == np.float32 and d.shape == (37, 23) and d.min() >= 0
        np.testing.assert_allclose(d, exact, atol=(4 + 10 * 19 ** 0.5) * 2 ** -24 * 2 * 19)
    np.testing.assert_array_equal(reference.direct_sqdist(a.astype(np.float64), b.astype(np.float64)),
                                  exact)
    sig = np.array([0.3, 1.0])
    const = math.log(23) + 0.5 * 19 * (math.log(2 * math.pi) + 2 * np.log(sig))
    np.testing.assert_array_equal(reference.parzen_lse(a, b, 0.5 / sig / sig, 8, 5) - const[:, None],
                                  parzen.log_likelihood(a, b, sig, (8, 5), use_kernel=False))
