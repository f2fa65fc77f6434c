"""npgan.metrics and npgan.classifier: closed forms, real-vs-real and
noise sanity, the shipped classifier's md5 and accuracy, bad inputs."""
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

def test_fd_of_a_set_with_itself_is_zero_and_fd_is_symmetric():
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(500, 30)) @ rng.normal(size=(30, 30))
    f2 = rng.normal(1.0, 2.0, size=(400, 30))
    assert M.frechet_distance_from_features(f1, f1) == pytest.approx(0.0, abs=1e-8)
    d12 = M.frechet_distance_from_features(f1, f2)
    d21 = M.frechet_distance_from_features(f2, f1)
    assert d12 > 1.0 and d12 == pytest.approx(d21, rel=1e-9)


def test_fd_equals_the_closed_form_for_commuting_covariances():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: FD = |mu1 - mu2|^2 + sum (sqrt a - sqrt b)^2
    rng = np.random.default_rng(1)
    d = 12
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    a[0] = 0.0                                      # singular S1 too
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    expect = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expect, rel=1e-9)
    assert M.frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expect, rel=1e-9)


def test_fd_scalar_closed_form_and_sqrtm_agreement():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert M.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    scipy = pytest.importorskip("scipy")  # noqa: F841
    rng = np.random.default_rng(2)
    s1, s2 = _spd(rng, 20), _spd(rng, 20, 0.5)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        M.frechet_distance(mu1, s1, mu2, s2, method="sqrtm"), rel=1e-8)


def test_fd_from_features_matches_fitted_statistics_and_the_truth():
    rng = np.random.default_rng(3)
    d = 5
    s1, s2 = _spd(rng, d, 0.7), _spd(rng, d, 0.4)
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    f1 = rng.multivariate_normal(mu1, s1, 20000)
    f2 = rng.multivariate_normal(mu2, s2, 20000)
    m, s = M.feature_statistics(f1)
    np.testing.assert_allclose(m, f1.mean(0))
    np.testing.assert_allclose(s, np.cov(f1, rowvar=False))
    fd = M.frechet_distance_from_features(f1, f2)
    assert fd == pytest.approx(M.frechet_distance(*M.feature_statistics(f1), *M.feature_statistics(f2)))
    assert fd == pytest.approx(M.frechet_distance(mu1, s1, mu2, s2), rel=0.05)


def test_fd_with_fewer_samples_than_features_is_finite():
    rng = np.random.default_rng(4)
    f1, f2 = rng.random((20, 100)), rng.random((30, 100)) + 0.1
    fd = M.frechet_distance_from_features(f1, f2)
    assert np.isfinite(fd) and fd > 0
    assert M.frechet_distance_from_features(f1, f1) == pytest.approx(0.0, abs=1e-8)


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
    assert M.classifier_score(onehot, splits=10)[0] == pytest.approx(10.0)
    same = np.full((n, c), -np.inf)
    same[:, 3] = 0.0                                           # one class only
    assert M.classifier_score(same)[0] == pytest.approx(1.0)
    flat = np.full((n, c), -np.log(c))                         # all ambiguous
    assert M.classifier_score(flat) == (pytest.approx(1.0), pytest.approx(0.0))
    with pytest.raises(MetricsError, match="logsumexp"):
        M.classifier_score(np.zeros((n, c)))
    with pytest.raises(MetricsError, match="splits"):
        M.classifier_score(flat[:5], splits=10)


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
    brute = np.sqrt(((q[:, None, :].astype(np.float64) - r[None]) ** 2).sum(-1))
    tiny = 4 * 301 * 5                       # 5 rows per block: many blocks
    np.testing.assert_allclose(M.nearest_distances(q, r, max_block_bytes=tiny), brute.min(1),
                               rtol=1e-4, atol=1e-4)
    self_d = np.sqrt(((r[:, None, :].astype(np.float64) - r[None]) ** 2).sum(-1))
    np.testing.assert_allclose(M.knn_radii(r, 3, max_block_bytes=tiny), np.sort(self_d, 1)[:, 3],
                               rtol=1e-4, atol=1e-4)
    lines = []
    M.nearest_distances(q, r, max_block_bytes=tiny, progress=lines.append)
    assert lines and "100%" in lines[-1]


def test_precision_recall_real_vs_real_and_noise(mnist, model):
    x = mnist[0]
    # precision/recall look through the first hidden layer (see npgan.metrics.suite)
    f_a = C.classify(model, x[:1500]).hidden1
    f_b = C.classify(model, x[1500:3000]).hidden1
    p, r = M.precision_recall(f_a, f_b, k=3)
    assert p > 0.85 and r > 0.85, (p, r)
    noise = np.random.default_rng(6).random((1500, 784)).astype(np.float32)
    f_n = C.classify(model, noise).hidden1
    p, r = M.precision_recall(f_a, f_n, k=3)
    assert p < 0.05 and r < 0.05, (p, r)


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
    assert np.allclose(np.logaddexp.reduce(logp, axis=1), 0, atol=1e-9)
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
