"""Semi-supervised pieces (npgan.semisupervised): logistic regression, its L2 choice,
balanced label draws, D's features."""
import numpy as np
import pytest

from npgan import gradcheck, models
from npgan import functional as F
from npgan import semisupervised as ssl
from npgan.tensor import Tensor


def _blobs(n, d=5, k=3, sep=4.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * sep
    y = rng.integers(0, k, n)
    return centres[y] + rng.standard_normal((n, d)), y


def test_logistic_regression_recovers_separable_blobs():
    x, y = _blobs(300)                                   # centres from default_rng(0)
    rng = np.random.default_rng(1)
    centres = np.random.default_rng(0).standard_normal((3, 5)) * 4.0
    yt = rng.integers(0, 3, 1000)
    xt = centres[yt] + rng.standard_normal((1000, 5))
    model = ssl.fit_logistic(x, y, n_classes=3, l2=1e-3, steps=300)
    assert ssl.accuracy(model, x, y) == 1.0
    assert ssl.accuracy(model, xt, yt) > 0.99
    # chance on shuffled labels of the test set
    assert ssl.accuracy(model, xt, rng.permutation(yt)) < 0.45


def test_logistic_regression_reaches_the_l2_optimum():
    # the optimum of CE + (l2/2)|W|^2 has zero gradient: check it at the fitted weights
    x, y = _blobs(80, d=3, sep=1.0, seed=2)
    l2 = 0.1
    model = ssl.fit_logistic(x, y, n_classes=3, l2=l2, steps=400, lr=0.2)
    w, b = model.linear.weight, model.linear.bias
    loss = F.cross_entropy(model(Tensor(x)), y) + (w * w).sum() * (0.5 * l2)
    model.zero_grad()
    loss.backward()
    assert np.abs(w.grad).max() < 1e-6 and np.abs(b.grad).max() < 1e-6
    # a larger L2 weight shrinks the weights
    big = ssl.fit_logistic(x, y, n_classes=3, l2=10 * l2, steps=400, lr=0.2)
    assert np.linalg.norm(big.linear.weight.data) < 0.7 * np.linalg.norm(w.data)


def test_objective_gradient_matches_finite_differences():
    x, y = _blobs(7, d=4, seed=3)
    def objective(w, b):
        return F.cross_entropy(F.linear(Tensor(x), w, b), y) + (w * w).sum() * 0.05
    rng = np.random.default_rng(4)
    assert gradcheck(objective, rng.standard_normal((4, 3)), rng.standard_normal(3))


def test_select_l2_prefers_strong_regularisation_for_noise_features():
    # 40 labelled points, 200 pure-noise features plus 2 informative ones: heavy L2 generalises
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(2), 20)
    x = np.concatenate([y[:, None] * 1.5 + 0.5 * rng.standard_normal((40, 2)),
                        rng.standard_normal((40, 200))], axis=1)
    best, scores = ssl.select_l2(x, y, grid=(1e-4, 1.0), folds=4, n_classes=2, steps=150)
    assert set(scores) == {1e-4, 1.0}
    assert best == 1.0 and scores[1.0] > scores[1e-4]


def test_balanced_subset():
    labels = np.random.default_rng(6).integers(0, 10, 5000)
    idx = ssl.balanced_subset(labels, 10, np.random.default_rng(0))
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=10), np.full(10, 10))
    again = ssl.balanced_subset(labels, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(idx, again)
    with pytest.raises(ValueError):
        ssl.balanced_subset(np.zeros(5, int), 10, np.random.default_rng(0))


def test_scaler_centres_and_scales_with_one_number():
    x = np.random.default_rng(7).standard_normal((500, 4)) * [1, 2, 3, 4] + 10
    s = ssl.Scaler.fit(x)
    z = s(x)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    assert np.sqrt((z ** 2).mean()) == pytest.approx(1.0)
    ratio = z.std(0) / x.std(0)
    np.testing.assert_allclose(ratio, ratio[0])           # relative scales kept


def test_discriminator_features_are_the_last_hidden_layer_in_eval_mode():
    rng = np.random.default_rng(8)
    D = models.Discriminator(inp=6, units=3, pieces=2, rng=rng)
    x = rng.random((5, 6)).astype(np.float32)
    f = ssl.discriminator_features(D, x, batch=2)
    w0, b0 = D.h0.linear.weight.data, D.h0.linear.bias.data
    w1, b1 = D.h1.linear.weight.data, D.h1.linear.bias.data
    h0 = (x @ w0 + b0).reshape(5, 3, 2).max(-1)
    h1 = (h0 @ w1 + b1).reshape(5, 3, 2).max(-1)
    np.testing.assert_allclose(f, h1, rtol=1e-5)
    both = ssl.discriminator_features(D, x, layers=("h0", "h1"))
    np.testing.assert_allclose(both, np.hstack([h0, h1]), rtol=1e-5)
    np.testing.assert_allclose(ssl.discriminator_features(D, x, layers=("h0",)), h0, rtol=1e-5)
    with pytest.raises(ValueError):
        ssl.discriminator_features(D, x, layers=("y",))
    assert D.training                                      # mode restored
