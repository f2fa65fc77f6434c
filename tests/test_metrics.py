"""npgan.metrics and npgan.classifier: closed forms, real-vs-real and
noise sanity, the shipped classifier's md5 and accuracy, bad inputs."""
import itertools
import os
import shutil

import numpy as np
import pytest

from npgan import classifier as C
from npgan import metrics as M
from npgan.datasets import load_mnist
from npgan.metrics import MetricsError

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "data")


@pytest.fixture(scope="module")
def mnist():
    os.environ.setdefault("NPGAN_NO_DOWNLOAD", "1")
    test_x, test_y = load_mnist("test", data_dir=DATA)
    return test_x, test_y


@pytest.fixture(scope="module")
def model():
    return C.load_classifier()


def _spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d)) * scale
    return a @ a.T + 0.1 * np.eye(d)


# ------------------------------------------------------------- Fréchet distance
#
# How far the float64 FD may be from the exact value (every FD tolerance below
# is this bound, none is one CPU's rounding). FD = |dmu|^2 + tr S1 + tr S2 -
# 2 tr sqrt(S1 S2), with tr sqrt(S1 S2) = sum_i sqrt(lambda_i(M)), M = R S2 R,
# R = S1^(1/2) from eigh of S1 (npgan.metrics.trace_sqrt_product).
# * eigh is backward stable: each computed eigenvalue of a symmetric A is off by
#   at most p(d) eps ||A||_2 (LAPACK Users' Guide 4.7: "p(n) a modestly growing
#   function of n"; we take p(d) = 4 d, which also covers forming R S2 R). So
#   lambda_i(S1) is off by e1 = p eps ||S1|| and lambda_i(M) by
#   eM = p eps ||S1|| ||S2|| (||M|| <= ||S1|| ||S2||).
# * sqrt turns an absolute error e at x into at most
#   min(sqrt(e), e / (2 sqrt(x))): for x >> e relative accuracy, but a zero
#   eigenvalue (a singular covariance) computed as +e gives sqrt(e), O(sqrt(eps)).
# * tr sqrt(S1 S2) is the nuclear norm of S2^(1/2) R, Lipschitz in R: an error
#   in sqrt(lambda_j(S1)) moves it by at most ||S2||^(1/2) times that error.
# * the sums: first-order rounding, p eps times the magnitudes summed.
# So |FD_computed - FD| <= 2 [sum_i sqrt_err(lambda_i(M), eM)
#                             + ||S2||^(1/2) sum_j sqrt_err(lambda_j(S1), e1)]
#                          + p eps (|dmu|^2 + tr S1 + tr S2 + 2 tr sqrt(S1 S2)).
# For S1 singular the first terms dominate: ~ 4 sqrt(p eps ||S1|| ||S2||) per
# zero eigenvalue, 1e-6 for d = 12, norms 4 (one CPU was 9e-8 off, another
# 2e-14; a relative 1e-9 held on one and failed on the other).

EPS = np.finfo(np.float64).eps


def _sqrt_err(x, e):
    """Largest |sqrt(x + t) - sqrt(x)| over |t| <= e (x >= 0)."""
    x = np.maximum(np.asarray(x, np.float64), 0.0)
    with np.errstate(divide="ignore"):
        return np.minimum(np.sqrt(e), e / (2 * np.sqrt(x)))


def fd_error_bound(mu1, s1, mu2, s2, lam):
    """Bound on the rounding error of the eigh FD (derivation above);
    ``lam``: the exact eigenvalues of S1^(1/2) S2 S1^(1/2) (= those of S1 S2)."""
    d = len(mu1)
    p = 4 * d
    n1, n2 = np.linalg.norm(s1, 2), np.linalg.norm(s2, 2)
    e1, em = p * EPS * n1, p * EPS * n1 * n2
    w = np.linalg.eigvalsh(s1)
    err_tr = _sqrt_err(lam, em).sum() + np.sqrt(n2) * _sqrt_err(w, e1).sum()
    size = (np.sum((np.asarray(mu1) - mu2) ** 2) + np.trace(s1) + np.trace(s2)
            + 2 * np.sqrt(np.maximum(lam, 0)).sum())
    return 2 * err_tr + p * EPS * size


def _self_bound(s):
    """FD bound for S1 = S2 = S: M = S^2, lambda_i(M) = lambda_i(S)^2."""
    mu = np.zeros(len(s))
    return fd_error_bound(mu, s, mu, s, np.linalg.eigvalsh(s) ** 2)


def test_fd_of_a_set_with_itself_is_zero_and_fd_is_symmetric():
    """Unclamped: FD's covariance term for S with itself is 0 to the rounding
    bound (a bias either way fails; frechet_distance would clamp a negative
    one to 0), the mean term exactly 0; FD(1, 2) = FD(2, 1) to the sum of
    the two computations' bounds."""
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(500, 30)) @ rng.normal(size=(30, 30))
    f2 = rng.normal(1.0, 2.0, size=(400, 30))
    mu, s = M.feature_statistics(f1)
    mean_term, cov_term = M.frechet_terms(mu, s, mu, s)
    assert mean_term == 0.0
    bound = _self_bound(s)                               # 2.6e-8 here (tr S = 2.4e3)
    assert abs(cov_term) <= bound, (cov_term, bound)
    assert M.frechet_distance_from_features(f1, f1) == max(mean_term + cov_term, 0.0)
    d12 = M.frechet_distance_from_features(f1, f2)
    d21 = M.frechet_distance_from_features(f2, f1)
    mu2, s2 = M.feature_statistics(f2)
    lam = np.linalg.eigvals(s @ s2).real
    assert d12 > 1.0
    assert abs(d12 - d21) <= fd_error_bound(mu, s, mu2, s2, lam) + fd_error_bound(mu2, s2, mu, s, lam)


@pytest.mark.parametrize("singular", [True, False])
def test_fd_equals_the_closed_form_for_commuting_covariances(singular):
    """S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: FD = |mu1 - mu2|^2 + sum (sqrt a - sqrt b)^2,
    to fd_error_bound: 1.6e-6 with a[0] = 0 (S1 singular: the zero eigenvalue
    of M is computed as +-1e-15 and its square root, ~3e-8, enters the trace),
    2e-11 without."""
    rng = np.random.default_rng(1)
    d = 12
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    if singular:
        a[0] = 0.0
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    expect = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    # the inputs s1, s2 are themselves rounded (|error| <= d eps ||S||): that
    # moves lambda(M) by another eM-sized amount, already inside p = 4d
    for m1, c1, m2, c2 in ((mu1, s1, mu2, s2), (mu2, s2, mu1, s1)):
        bound = fd_error_bound(m1, c1, m2, c2, a * b)
        assert bound < (2e-6 if singular else 1e-10)          # the bound is not vacuous
        got = M.frechet_distance(m1, c1, m2, c2)
        assert abs(got - expect) <= bound, (got, expect, bound)


def test_fd_scalar_closed_form_and_sqrtm_agreement():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2, exact in binary (sqrt 4, sqrt 9 exact)
    assert M.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == 4 + 1
    scipy = pytest.importorskip("scipy")  # noqa: F841
    rng = np.random.default_rng(2)
    s1, s2 = _spd(rng, 20), _spd(rng, 20, 0.5)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    lam = np.linalg.eigvals(s1 @ s2).real
    eigh = M.frechet_distance(mu1, s1, mu2, s2)
    sqrtm = M.frechet_distance(mu1, s1, mu2, s2, method="sqrtm")
    # sqrtm works on the non-symmetric S1 S2 = V diag(lam) V^-1 with V = R U:
    # Bauer-Fike, its eigenvalues are off by <= kappa(V) p eps ||S1 S2||, kappa(V)
    # = kappa(R) = sqrt(kappa(S1)); each enters the trace through sqrt
    e = 4 * 20 * EPS * np.sqrt(np.linalg.cond(s1)) * np.linalg.norm(s1, 2) * np.linalg.norm(s2, 2)
    bound = fd_error_bound(mu1, s1, mu2, s2, lam) + 2 * _sqrt_err(lam, e).sum() \
        + 4 * 20 * EPS * abs(eigh)
    assert bound < 1e-8 * eigh                                 # 2.4e-9 on FD = 228
    assert abs(eigh - sqrtm) <= bound, (eigh, sqrtm, bound)


def test_fd_from_features_matches_fitted_statistics_and_the_truth():
    rng = np.random.default_rng(3)
    d, n = 5, 20000
    s1, s2 = _spd(rng, d, 0.7), _spd(rng, d, 0.4)
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    # z L^T (Cholesky factor, unique): the same draws on every LAPACK
    # (multivariate_normal's default SVD factor depends on sign conventions)
    f1 = rng.standard_normal((n, d)) @ np.linalg.cholesky(s1).T + mu1
    f2 = rng.standard_normal((n, d)) @ np.linalg.cholesky(s2).T + mu2
    m, s = M.feature_statistics(f1)
    # a sum of n terms: |error| <= n eps sum|terms| (any summation order);
    # for the covariance sum|c_i c_j| <= (n - 1) sqrt(S_ii S_jj) (Cauchy-Schwarz)
    np.testing.assert_allclose(m, f1.mean(0), rtol=0, atol=2 * n * EPS * np.abs(f1).mean(0).max())
    sd = np.sqrt(np.diag(s))
    np.testing.assert_array_less(np.abs(s - np.cov(f1, rowvar=False)), 4 * n * EPS * np.outer(sd, sd))
    fd = M.frechet_distance_from_features(f1, f2)
    assert fd == M.frechet_distance(*M.feature_statistics(f1), *M.feature_statistics(f2))
    # sampling: over 200 seeds FD-hat has mean +0.04 % and s.d. 0.8 % of the
    # truth (12.90); 5 % is 6 s.d.
    assert fd == pytest.approx(M.frechet_distance(mu1, s1, mu2, s2), rel=0.05)


def test_fd_with_fewer_samples_than_features_is_finite():
    rng = np.random.default_rng(4)
    f1, f2 = rng.random((20, 100)), rng.random((30, 100)) + 0.1
    fd = M.frechet_distance_from_features(f1, f2)
    assert np.isfinite(fd) and fd > 0
    # rank-19 covariance: 81 zero eigenvalues, each computed as +-eps-sized and
    # entering the trace through sqrt (-5e-7 on one CPU; the bound is 7.5e-5,
    # against tr S = 8.5, so a relative bias of 1e-5 fails)
    mu, s = M.feature_statistics(f1)
    mean_term, cov_term = M.frechet_terms(mu, s, mu, s)
    assert mean_term == 0.0 and abs(cov_term) <= _self_bound(s), (cov_term, _self_bound(s))
    assert _self_bound(s) < 1e-5 * np.trace(s)


def test_fd_bad_inputs():
    with pytest.raises(MetricsError, match="shape"):
        M.frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))
    with pytest.raises(MetricsError, match="not symmetric"):
        M.frechet_distance(np.zeros(2), [[1, 0.5], [0, 1]], np.zeros(2), np.eye(2))
    with pytest.raises(MetricsError, match="positive semi-definite"):
        M.frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(MetricsError, match="NaN"):
        M.frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(MetricsError, match="dimensions differ"):
        M.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(MetricsError, match="at least 2"):
        M.frechet_distance_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(MetricsError, match="features per row"):
        M.frechet_distance_from_features(np.zeros((4, 3)), np.zeros((5, 2)))


# --------------------------------------------------------- score and classes

def test_classifier_score_extremes():
    n, c = 1000, 10
    onehot = np.full((n, c), -np.inf)
    onehot[np.arange(n), np.arange(n) % c] = 0.0                 # confident, balanced
    # exp(log 10) and exp(0): a few elementary operations, 50 eps relative
    assert M.classifier_score(onehot, splits=10)[0] == pytest.approx(10.0, rel=50 * EPS)
    same = np.full((n, c), -np.inf)
    same[:, 3] = 0.0                                           # one class only
    assert M.classifier_score(same)[0] == pytest.approx(1.0, rel=50 * EPS)
    flat = np.full((n, c), -np.log(c))                         # all ambiguous
    assert M.classifier_score(flat) == (pytest.approx(1.0, rel=50 * EPS), pytest.approx(0.0, abs=50 * EPS))
    with pytest.raises(MetricsError, match="logsumexp"):
        M.classifier_score(np.zeros((n, c)))
    with pytest.raises(MetricsError, match="splits"):
        M.classifier_score(flat[:5], splits=10)


def _score_by_hand(lp, splits):
    """The Inception-score formula written out with probabilities (not log
    space): per part, p(y) = mean p(y|x), KL_x = sum_y p log(p / p(y)) with
    0 log 0 = 0, score = exp(mean KL); mean and population s.d. over parts."""
    p = np.exp(lp)
    size = len(p) // splits
    scores = []
    for i in range(splits):
        part = p[i * size:(i + 1) * size]
        py = part.mean(axis=0)
        kl = [sum(pi * np.log(pi / qi) for pi, qi in zip(row, py) if pi > 0) for row in part]
        scores.append(np.exp(np.mean(kl)))
    return np.mean(scores), np.sqrt(np.mean((np.array(scores) - np.mean(scores)) ** 2))


def test_classifier_score_per_split_equals_the_formula():
    """Three parts of two samples (and a seventh sample, dropped as the
    remainder): part 1 two confident, different classes: p(y) = (.5, .5),
    score 2; part 2 two confident, same class: 1; part 3 (.5, .5) and (1, 0):
    p(y) = (.75, .25), KLs .5 log(4/3) and log(4/3), score (4/3)^.75."""
    with np.errstate(divide="ignore"):
        lp = np.log([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.5], [1.0, 0.0],
                     [0.0, 1.0]])
    parts = np.array([2.0, 1.0, (4 / 3) ** 0.75])
    mean, std = M.classifier_score(lp, splits=3)
    # a few dozen elementary operations, each within half an ulp: 50 eps relative
    assert mean == pytest.approx(parts.mean(), rel=50 * EPS, abs=0)
    assert std == pytest.approx(parts.std(), rel=50 * EPS, abs=0)
    assert M.classifier_score(lp[:6], splits=1) == (pytest.approx(_score_by_hand(lp[:6], 1)[0],
                                                                  rel=50 * EPS), 0.0)
    # random soft predictions, several splits, a remainder: the formula by hand
    rng = np.random.default_rng(11)
    logits = rng.normal(0, 3, (103, 10))
    lp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    for splits in (1, 4, 10):
        got = M.classifier_score(lp, splits=splits)
        want = _score_by_hand(lp, splits)
        # the score is exp of a mean of sums over 10 classes, each term a
        # product with a log; ~ (10 + 26) eps relative per KL, exp keeps it
        # relative (KL < log 10); the s.d. is a difference: its error is the
        # mean's, absolute
        assert got[0] == pytest.approx(want[0], rel=200 * EPS, abs=0), splits
        assert got[1] == pytest.approx(want[1], rel=0, abs=200 * EPS * want[0]), splits
        assert splits == 1 or got[1] > 1e-3                # the parts do differ


def test_class_histogram_and_coverage():
    lp = np.log(np.full((200, 10), 1e-9))
    lp[:150, 2] = 0.0
    lp[150:199, 7] = 0.0
    lp[199, 5] = 0.0
    lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
    counts = M.class_histogram(lp)
    assert counts.tolist() == [0, 0, 150, 0, 0, 1, 0, 49, 0, 0]
    assert M.classes_covered(counts) == 2               # one stray sample is not coverage
    assert M.classes_covered(counts, min_fraction=0.0) == 10
    assert M.classes_covered(counts, min_fraction=0.004) == 3


# ------------------------------------------------------------ neighbours

def test_blocked_distances_match_brute_force():
    rng = np.random.default_rng(5)
    q, r = rng.random((57, 16)).astype(np.float32), rng.random((301, 16)).astype(np.float32)
    tiny = 4 * 301 * 5                       # 5 rows per block: many blocks
    # float32 squared distance off by e <= (D + 6) u32 (|q - c| + |r - c|)^2 (see
    # _brute_coverage); the distance then by <= min(sqrt(e), e / (2 d)): ~1e-6 here
    c = r.astype(np.float64).mean(0)
    e = (16 + 6) * U32 * (np.linalg.norm(q - c, axis=1) + np.linalg.norm(r - c, axis=1).max()) ** 2
    want = np.sqrt(_sq_dist64(q, r).min(1))
    got = M.nearest_distances(q, r, max_block_bytes=tiny)
    np.testing.assert_array_less(np.abs(got - want), np.minimum(np.sqrt(e), e / (2 * want)))
    e = (16 + 6) * U32 * (2 * np.linalg.norm(r - c, axis=1).max()) ** 2
    want = _brute_radii(r, 3)
    got = M.knn_radii(r, 3, max_block_bytes=tiny)
    np.testing.assert_array_less(np.abs(got - want), np.minimum(np.sqrt(e), e / (2 * want)))
    assert np.minimum(np.sqrt(e), e / (2 * want)).max() < 1e-5
    lines = []
    M.nearest_distances(q, r, max_block_bytes=tiny, progress=lines.append)
    assert lines and "100%" in lines[-1]


def _sq_dist64(q, r):
    """Squared distances in float64 (GEMM; its rounding, ~D eps of the
    scale, is 1e-9 of the float32 rounding allowed for below)."""
    q64, r64 = q.astype(np.float64), r.astype(np.float64)
    c = r64.mean(0)
    q64, r64 = q64 - c, r64 - c
    return np.maximum((q64 ** 2).sum(1)[:, None] + (r64 ** 2).sum(1)[None] - 2 * q64 @ r64.T, 0)


def _brute_radii(f, k):
    return np.sqrt(np.sort(_sq_dist64(f, f), axis=1)[:, k])     # index 0: the point itself


U32 = np.finfo(np.float32).eps / 2


def _brute_coverage(q, r, radii):
    """(fraction of q inside some ball (r_j, radii_j), the fraction surely
    inside, the fraction possibly inside) under the metric's float32
    rounding. The metric compares float32 |q - c|^2 + |r - c|^2 - 2 (q - c).(r - c)
    (c: r's mean) with float32 radius^2, the radius itself from such a
    distance: each side is off by at most ~(D + 6) u32 (|q - c| + |r - c|)^2;
    a query is surely inside when a ball holds it by more than 4 times that,
    surely outside when every ball misses it by more."""
    d2 = _sq_dist64(q, r)
    c = r.astype(np.float64).mean(0)
    scale = (np.linalg.norm(q - c, axis=1)[:, None] + np.linalg.norm(r - c, axis=1)[None]) ** 2
    tol = 4 * (q.shape[1] + 6) * U32 * scale
    gap = d2 - radii[None] ** 2
    return (gap <= 0).any(axis=1).mean(), (gap < -tol).any(axis=1).mean(), (gap <= tol).any(axis=1).mean()


def test_precision_recall_equal_a_hand_count_on_a_line():
    """Real points 0..9 on a line, k = 3: the k-NN radius is 3 at the ends and
    2 inside, so the real manifold is [-3, 12]. Fakes -2.9, 5.5, 11.9 are in it,
    -3.3 and 12.3 (10 % past the end balls' radius 3) and 40 are not:
    precision 3/6. Fakes 0, .5, 1, 1.4 (k-NN radii 1.4, .9, 1, 1.4) cover
    [-1.4, 2.8]: of the reals 0, 1, 2: recall 3/10."""
    real = np.arange(10.0)[:, None] * [1.0, 0.0]               # on a line in 2-D
    fake = np.array([-2.9, -3.3, 5.5, 11.9, 12.3, 40.0])[:, None] * [1.0, 0.0]
    # radii: relative error <= (D + 6) u32 (2 max|x - c|)^2 / (2 r^2) (see _brute_coverage)
    np.testing.assert_allclose(M.knn_radii(real, 3), [3, 2, 2, 2, 2, 2, 2, 2, 2, 3],
                               rtol=8 * U32 * 9 ** 2 / (2 * 2 ** 2))
    p, r = M.precision_recall(real, fake, k=3)
    assert p == 3 / 6 and r == 1.0                   # fake radii >= 8.4 cover 0..9
    near = np.array([0.0, 0.5, 1.0, 1.4])[:, None] * [1.0, 0.0]
    np.testing.assert_allclose(M.knn_radii(near, 3), [1.4, 0.9, 1.0, 1.4],
                               rtol=8 * U32 * 1.4 ** 2 / (2 * 0.9 ** 2))
    assert M.precision_recall(real, near, k=3) == (1.0, 3 / 10)


def test_precision_recall_equal_brute_force_k_nn():
    """Random sets in 8-D: radii and both fractions equal a float64 brute force
    (the sets are checked to hold no decision within the rounding's reach)."""
    rng = np.random.default_rng(12)
    real = rng.normal(size=(120, 8)).astype(np.float32)
    fake = (rng.normal(size=(80, 8)) * 0.9 + 0.8).astype(np.float32)
    for k in (1, 3, 5):
        rr, rf = _brute_radii(real, k), _brute_radii(fake, k)
        # radius from a float32 squared distance: relative error <= (D + 6) u32
        # scale / (2 r^2); radii here are > 1 against scales < 100
        c = real.mean(0, dtype=np.float64)
        assert rr.min() > 1 and (2 * np.linalg.norm(real - c, axis=1).max()) ** 2 < 100
        np.testing.assert_allclose(M.knn_radii(real, k), rr, rtol=(8 + 6) * U32 * 100 / 2)
        want_p, lo_p, hi_p = _brute_coverage(fake, real, rr)
        want_r, lo_r, hi_r = _brute_coverage(real, fake, rf)
        assert lo_p == want_p == hi_p and lo_r == want_r == hi_r, k     # no decision in reach
        assert 0.2 < want_p < 0.9 and 0.2 < want_r < 0.9            # not a trivial case
        tiny = 4 * 120 * 7                                           # 7 rows per block
        assert M.precision_recall(real, fake, k=k, max_block_bytes=tiny) == (want_p, want_r), k
        assert M.precision_recall(real, fake, k=k, real_radii=M.knn_radii(real, k)) == (want_p, want_r)


def test_distance_summary_equals_hand_values():
    """0..100 with the last replaced by 1000: quantiles at the integers (linear
    interpolation lands on samples), median 50, mean 5950 / 101 (the sum is
    exact in float64; one division)."""
    d = np.arange(101.0)
    d[-1] = 1000.0
    s = M.distance_summary(d)
    assert s == {"q01": 1.0, "q05": 5.0, "q25": 25.0, "q50": 50.0, "q75": 75.0, "q95": 95.0,
                 "median": 50.0, "mean": 5950 / 101}


def test_precision_recall_real_vs_real_and_noise(mnist, model):
    x = mnist[0]
    # precision/recall look through the first hidden layer (see npgan.metrics.suite)
    f_a = C.classify(model, x[:1500]).hidden1
    f_b = C.classify(model, x[1500:3000]).hidden1
    p, r = M.precision_recall(f_a, f_b, k=3)
    # 600-D float32: some decisions lie within rounding's reach (any CPU may
    # count them either way): p and r are within [surely, possibly] inside of
    # a float64 brute force, whose lower ends clear 0.85 (0.858 and 0.873 here)
    _, lo_p, hi_p = _brute_coverage(f_b, f_a, _brute_radii(f_a, 3))
    _, lo_r, hi_r = _brute_coverage(f_a, f_b, _brute_radii(f_b, 3))
    assert lo_p <= p <= hi_p and lo_r <= r <= hi_r, (p, lo_p, hi_p, r, lo_r, hi_r)
    assert lo_p > 0.85 and lo_r > 0.85, (lo_p, lo_r)
    noise = np.random.default_rng(6).random((1500, 784)).astype(np.float32)
    f_n = C.classify(model, noise).hidden1
    p, r = M.precision_recall(f_a, f_n, k=3)
    _, lo_p, hi_p = _brute_coverage(f_n, f_a, _brute_radii(f_a, 3))
    _, lo_r, hi_r = _brute_coverage(f_a, f_n, _brute_radii(f_n, 3))
    assert lo_p <= p <= hi_p < 0.05 and lo_r <= r <= hi_r < 0.05, (p, hi_p, r, hi_r)  # 0 here


def test_precision_recall_need_k_plus_one_points():
    rng = np.random.default_rng(7)
    with pytest.raises(MetricsError, match="at least 4"):
        M.precision_recall(rng.random((10, 5)), rng.random((3, 5)), k=3)


# ------------------------------------------------------------ classifier

def test_shipped_classifier_md5_and_accuracy(mnist, model):
    assert C.WEIGHTS_MD5 is not None
    assert C.file_md5(C.WEIGHTS_PATH) == C.WEIGHTS_MD5
    assert os.path.getsize(C.WEIGHTS_PATH) < 4_000_000
    x, y = mnist          # all 10,000 (~1 s); the first 5,000 are the harder half
    feats, h1, logp = C.classify(model, x)
    assert h1.shape == (10000, 600)
    assert feats.shape == (10000, C.FEATURE_DIM) and feats.dtype == np.float32 and feats.min() >= 0
    # log_softmax in float64: off by a few eps times the largest |log p| of the row
    row = np.abs(logp).max(axis=1)
    assert np.all(np.abs(np.logaddexp.reduce(logp, axis=1)) <= 16 * EPS * np.maximum(row, 1))
    acc = (logp.argmax(1) == y).mean()
    assert acc >= 0.985, acc


def test_classifier_file_problems(tmp_path):
    bad = tmp_path / "altered.npz"
    shutil.copy(C.WEIGHTS_PATH, bad)
    with open(bad, "r+b") as f:
        f.seek(-100, os.SEEK_END)
        f.write(b"\x01\x02\x03")
    with pytest.raises(C.ClassifierError, match="md5"):
        C.load_classifier(bad, md5=C.WEIGHTS_MD5)
    with pytest.raises(C.ClassifierError, match="not found"):
        C.load_classifier(tmp_path / "missing.npz")
    small = C.MNISTClassifier(sizes=(784, 32, 32, 10), rng=np.random.default_rng(0))
    C.save_weights(small, tmp_path / "small.npz")
    with pytest.raises(C.ClassifierError, match=r"fc0.weight.*\(784, 32\).*\(784, 600\)"):
        C.load_classifier(tmp_path / "small.npz")
    np.savez(tmp_path / "other.npz", w=np.zeros(3, np.float32))
    with pytest.raises(C.ClassifierError, match="missing arrays"):
        C.load_classifier(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(C.ClassifierError, match="cannot read"):
        C.load_classifier(tmp_path / "junk.npz")


def test_save_weights_is_deterministic(tmp_path):
    m = C.MNISTClassifier(sizes=(784, 8, 8, 10), rng=np.random.default_rng(0))
    assert C.save_weights(m, tmp_path / "a.npz") == C.save_weights(m, tmp_path / "b.npz")


# ------------------------------------------------------------ bad images

@pytest.mark.parametrize("x, match", [
    (np.zeros((5, 783), np.float32), "shape"),
    (np.zeros((5, 2, 28, 28), np.float32), "shape"),
    (np.zeros((5, 784), np.uint8), "uint8 pixels"),
    (np.full((5, 784), 1.5, np.float32), r"\[0, 1\]"),
    (np.full((5, 784), -0.5, np.float32), "tanh"),
    (np.where(np.arange(784) == 3, np.nan, 0.5).astype(np.float32)[None].repeat(5, 0), "NaN"),
    (np.zeros((2, 784), np.float32), "at least 4"),
])
def test_bad_images_are_refused(x, match):
    with pytest.raises(MetricsError, match=match):
        M.check_images(x, min_count=4)


def test_image_shapes_accepted():
    x = np.random.default_rng(8).random((6, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(M.check_images(x), x.reshape(6, 784))
    np.testing.assert_array_equal(M.check_images(x[:, None]), x.reshape(6, 784))


# ------------------------------------------------------------ end to end

def test_evaluate_end_to_end_small(mnist, model):
    x = mnist[0]
    train = load_mnist("train", data_dir=DATA)[0][:3000]
    ref = M.RealReference(x[:1000], train, model=model)
    real = M.evaluate(x[1000:1400], ref)
    blur = x[1000:1400].reshape(-1, 28, 28)
    for _ in range(2):
        blur = (blur + np.roll(blur, 1, 1) + np.roll(blur, 1, 2) + np.roll(blur, -1, 1)
                + np.roll(blur, -1, 2)) / 5
    fake = M.evaluate(blur, ref)
    assert set(real) >= {"fd", "score", "class_counts", "classes_covered", "precision", "recall",
                         "nn_train", "nn_train_real"}
    # margins (values here: score 8.67, precision 0.8725, recall 0.879; blurred:
    # FD 57.8 vs 21.3, recall 0.138) are 7-20 % of the figures; rounding can
    # move a precision/recall by the share of decisions within its reach, under
    # 0.5 % in the real-vs-real test above
    assert real["classes_covered"] == 10 and real["score"] > 8
    assert real["precision"] > 0.8 and real["recall"] > 0.8
    # blur: still typical digits (precision stays high) but the variety is gone
    assert fake["fd"] > 2 * real["fd"] and fake["score"] < real["score"]
    assert fake["recall"] < 0.5 * real["recall"]
    with pytest.raises(MetricsError, match="at least 10"):
        M.evaluate(x[:5], ref)                      # fewer than splits=10
    bad = x[:100].copy()
    bad[3, 4] = np.nan
    with pytest.raises(MetricsError, match="NaN"):
        M.evaluate(bad, ref)


def test_best_assignment_is_optimal():
    rng = np.random.default_rng(3)
    for trial in range(60):
        n = int(rng.integers(1, 6))
        m = n + int(rng.integers(0, 2))
        c = rng.integers(0, 4, (n, m)).astype(float) if trial % 2 else rng.standard_normal((n, m))
        cols = M.best_assignment(c)
        assert len(set(cols.tolist())) == n
        brute = min(sum(c[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        assert c[np.arange(n), cols].sum() == pytest.approx(brute, abs=1e-12)
    with pytest.raises(ValueError):
        M.best_assignment(np.zeros((3, 2)))
    with pytest.raises(ValueError):
        M.best_assignment([[np.nan]])


def test_best_assignment_matches_scipy_on_10x10():
    scipy_opt = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(4)
    for _ in range(20):
        c = rng.integers(0, 100, (10, 10)).astype(float)
        r, s = scipy_opt.linear_sum_assignment(c)
        assert c[np.arange(10), M.best_assignment(c)].sum() == c[r, s].sum()


def test_cluster_agreement_permuted_and_random():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 10, 20000)
    perm = rng.permutation(10)
    agree, mapping = M.cluster_agreement(perm[labels], labels)
    assert agree == 1.0
    np.testing.assert_array_equal(mapping[perm], np.arange(10))    # code perm[k] -> class k
    # 10 % of the codes replaced by random values: agreement 0.9 + 0.1 x 0.1
    codes = perm[labels].copy()
    swap = rng.random(len(codes)) < 0.1
    codes[swap] = rng.integers(0, 10, swap.sum())
    assert M.cluster_agreement(codes, labels)[0] == pytest.approx(0.91, abs=0.01)
    # independent codes: chance, 0.1 plus the small gain the best matching squeezes out
    agree, _ = M.cluster_agreement(rng.integers(0, 10, 20000), labels)
    assert 0.1 <= agree < 0.115
