"""functional: gradchecks, closed forms, and exactness where activations saturate."""
import math

import numpy as np
import pytest

from npgan import Tensor, gradcheck
from npgan import functional as F
from npgan import nn, settings


def R(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------- gradchecks

@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softplus", "log_sigmoid", "exp"])
def test_gradcheck_activation_functions(name):
    x = 2 * R(4, 5)
    x = np.where(np.abs(x) < 0.05, 0.3, x)     # clear of relu's kink
    assert gradcheck(getattr(F, name), x)


def test_functions_accept_arrays():
    x = R(3)
    np.testing.assert_allclose(F.sigmoid(x).data, 1 / (1 + np.exp(-x)), rtol=1e-14)
    np.testing.assert_allclose(F.log(np.exp(x)).data, x, rtol=1e-14)
    np.testing.assert_array_equal(F.clip(x, -0.1, 0.1).data, np.clip(x, -0.1, 0.1))


def test_gradcheck_clip_and_maxout():
    x = np.array([[-2.0, -0.3, 0.4, 1.7, 0.9, -1.2]])
    assert gradcheck(lambda t: F.clip(t, -1.0, 1.0), x)
    assert gradcheck(lambda t: F.maxout(t, 2), R(3, 8))


def test_gradcheck_linear():
    assert gradcheck(F.linear, R(4, 3), R(3, 2, seed=1), R(2, seed=2))
    assert gradcheck(lambda x, w: F.linear(x, w), R(4, 3), R(3, 2, seed=1))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_gradcheck_log_softmax(axis):
    assert gradcheck(lambda x: F.log_softmax(x, axis=axis), 3 * R(4, 5))


def test_log_softmax_values_and_stability():
    x = R(4, 5)
    ref = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(F.log_softmax(x, axis=1).data, ref, rtol=1e-13, atol=1e-15)
    big = np.array([[1e4, 0.0, -1e4]])
    out = F.log_softmax(big).data
    np.testing.assert_allclose(out, [[0.0, -1e4, -2e4]])
    np.testing.assert_allclose(F.log_softmax(big.astype(np.float32)).data, [[0.0, -1e4, -2e4]])


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_cross_entropy(reduction):
    labels = np.array([2, 0, 4, 2])
    assert gradcheck(lambda x: F.cross_entropy(x, labels, reduction=reduction), 2 * R(4, 5))


def test_cross_entropy_value_and_gradient_closed_form():
    x, labels = R(4, 5), np.array([2, 0, 4, 2])
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    t = Tensor(x, requires_grad=True)
    loss = F.cross_entropy(t, labels)
    np.testing.assert_allclose(loss.item(), -np.log(p[np.arange(4), labels]).mean(), rtol=1e-13)
    loss.backward()
    onehot = np.eye(5)[labels]
    np.testing.assert_allclose(t.grad, (p - onehot) / 4, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("labels", [np.array([0, 1]), np.array([0.0, 1.0, 2.0]), np.array([[0, 1, 2]]),
                                    np.array([0, -1, 2]), np.array([0, 4, 2])])
def test_cross_entropy_refuses_bad_labels(labels):
    with pytest.raises(ValueError, match="labels"):
        F.cross_entropy(R(3, 4), labels)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("targets", [0, 1, 0.3, "array", "broadcast"])
def test_gradcheck_bce_with_logits(reduction, targets):
    rng = np.random.default_rng(3)
    if targets == "array":
        targets = rng.uniform(0, 1, (4, 3))
    elif targets == "broadcast":
        targets = rng.integers(0, 2, (4, 1)).astype(float)
    assert gradcheck(lambda l: F.binary_cross_entropy_with_logits(l, targets, reduction), 3 * R(4, 3))


def test_gradcheck_bce_wrt_targets():
    assert gradcheck(lambda l, t: F.binary_cross_entropy_with_logits(l, t, "none"),
                     3 * R(4, 3), np.random.default_rng(1).uniform(0, 1, (4, 3)))


def test_bce_value_and_gradient_closed_form():
    """loss = -[t log s + (1-t) log(1-s)], d loss / d l = (s - t) / N."""
    l = 3 * R(5, 2)
    t = np.random.default_rng(7).uniform(0, 1, (5, 2))
    s = 1 / (1 + np.exp(-l))
    for targets in (t, Tensor(t)):
        lt = Tensor(l, requires_grad=True)
        loss = F.binary_cross_entropy_with_logits(lt, targets)
        np.testing.assert_allclose(loss.item(), -(t * np.log(s) + (1 - t) * np.log(1 - s)).mean(),
                                   rtol=1e-13)
        loss.backward()
        np.testing.assert_allclose(lt.grad, (s - t) / t.size, rtol=1e-12, atol=1e-17)
    for c in (0, 1, 0.25):
        lt = Tensor(l, requires_grad=True)
        loss = F.binary_cross_entropy_with_logits(lt, c, reduction="none")
        np.testing.assert_allclose(loss.data, -(c * np.log(s) + (1 - c) * np.log(1 - s)), rtol=1e-12)
        loss.backward(np.ones_like(l))
        np.testing.assert_allclose(lt.grad, s - c, rtol=1e-12, atol=1e-16)


def test_bce_errors():
    with pytest.raises(ValueError, match="reduction"):
        F.binary_cross_entropy_with_logits(R(3), 1, reduction="sum")
    with pytest.raises(ValueError, match="broadcast"):
        F.binary_cross_entropy_with_logits(R(3, 1), np.ones((3, 2)))


# ----------------------------------------------------------------------------- saturation

def _sigmoid64(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus64(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


SAT_X = np.array([-1e4, -30.0, -1.0, 0.0, 1.0, 30.0, 1e4])


def _close(actual, desired, dtype):
    """Exact to the last few ulps of ``dtype``; finite everywhere."""
    actual = np.asarray(actual)
    assert actual.dtype == dtype
    assert np.all(np.isfinite(actual))
    rtol = 4 * np.finfo(dtype).eps
    tiny = np.finfo(dtype).tiny          # results below that are allowed to flush
    np.testing.assert_allclose(actual.astype(np.float64), desired, rtol=rtol, atol=tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_activations_exact(dtype):
    x = SAT_X.astype(dtype)
    x64 = x.astype(np.float64)
    cases = {
        "sigmoid": (_sigmoid64(x64), _sigmoid64(x64) * _sigmoid64(-x64)),
        "softplus": (_softplus64(x64), _sigmoid64(x64)),
        "log_sigmoid": (-_softplus64(-x64), _sigmoid64(-x64)),
    }
    for name, (value, grad) in cases.items():
        t = Tensor(x, requires_grad=True)
        y = getattr(F, name)(t)
        _close(y.data, value, dtype)
        y.backward(np.ones_like(x))
        _close(t.grad, grad, dtype)
    # the values that matter for the GAN at |x| = 30, written out
    if dtype == np.float32:
        s30 = np.float32(9.357623e-14)
        assert F.sigmoid(Tensor(x))[1].item() == pytest.approx(s30, rel=1e-6)
        assert F.log_sigmoid(Tensor(x))[5].item() == pytest.approx(-s30, rel=1e-6)
        assert F.softplus(Tensor(x))[1].item() == pytest.approx(s30, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["scalar", "array", "tensor"])
def test_saturated_bce_exact(dtype, kind):
    """Confident right and confident wrong answers at |logit| = 30 and 1e4:
    loss and gradient (sigmoid(l) - t, per element) exact, never 0 where they
    are not, never inf/NaN."""
    l = SAT_X.astype(dtype)
    l64 = l.astype(np.float64)
    for target in (0.0, 1.0):
        t = {"scalar": int(target), "array": np.full(l.shape, target, dtype),
             "tensor": Tensor(np.full(l.shape, target, dtype))}[kind]
        lt = Tensor(l, requires_grad=True)
        loss = F.binary_cross_entropy_with_logits(lt, t, reduction="none")
        value = _softplus64(l64) if target == 0 else _softplus64(-l64)
        grad = _sigmoid64(l64) if target == 0 else -_sigmoid64(-l64)
        _close(loss.data, value, dtype)
        loss.backward(np.ones_like(l))
        _close(lt.grad, grad, dtype)
        lt = Tensor(l, requires_grad=True)
        mean = F.binary_cross_entropy_with_logits(lt, t)
        assert mean.dtype == dtype and mean.shape == ()
        _close(mean.data, value.mean(), dtype)
        mean.backward()
        _close(lt.grad, grad / l.size, dtype)


# ----------------------------------------------------------------------------- dropout

def test_gradcheck_dropout_with_fixed_mask():
    def fn(x):
        return F.dropout(x, 0.4, rng=np.random.default_rng(5))   # same mask every evaluation
    assert gradcheck(fn, R(6, 7))


def test_dropout_mask_and_scaling():
    x = np.ones((200, 500))
    y = F.dropout(x, 0.2, rng=np.random.default_rng(0)).data
    assert set(np.unique(y)) == {0.0, 1.25}
    kept = np.mean(y != 0)
    assert abs(kept - 0.8) < 4 * np.sqrt(0.8 * 0.2 / y.size)
    assert abs(y.mean() - 1.0) < 0.01
    t = Tensor(x, requires_grad=True)
    out = F.dropout(t, 0.2, rng=np.random.default_rng(0))
    out.sum().backward()
    np.testing.assert_array_equal(t.grad, y)        # same mask, same scaling


def test_dropout_identity_in_eval_and_p0():
    t = Tensor(R(3, 4))
    assert F.dropout(t, 0.5, training=False) is t
    assert F.dropout(t, 0.0) is t


def test_dropout_keeps_dtype_and_refuses_bad_p():
    t = Tensor(np.ones((3, 4), np.float32))
    assert F.dropout(t, 0.5, rng=np.random.default_rng(0)).dtype == np.float32
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError):
            F.dropout(t, p)


def test_dropout_same_seed_same_mask():
    a = F.dropout(np.ones((10, 10)), 0.5, rng=np.random.default_rng(9)).data
    b = F.dropout(np.ones((10, 10)), 0.5, rng=np.random.default_rng(9)).data
    c = F.dropout(np.ones((10, 10)), 0.5, rng=np.random.default_rng(10)).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ----------------------------------------------------------------------------- edge sizes

@pytest.fixture(params=["compiled", "reference"])
def kernel_path(request):
    """Run a test on the compiled kernels (where built) and on the NumPy references."""
    with settings.override(kernels=settings.kernels() and request.param == "compiled"):
        yield request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_zero_row_batch_goes_through_the_paper_networks(kernel_path, dtype):
    """A batch of 0 rows is an empty result of the right shape (as NumPy and
    PyTorch), forward and backward, with zero parameter gradients."""
    rng = np.random.default_rng(0)
    G = nn.Sequential(nn.Linear(5, 7, dtype=dtype, rng=rng), nn.ReLU(),
                      nn.Linear(7, 12, dtype=dtype, rng=rng), nn.Sigmoid())
    D = nn.Sequential(nn.Dropout(0.2, rng=0), nn.Maxout(12, 3, 4, dtype=dtype, rng=rng),
                      nn.Dropout(0.5, rng=1), nn.Linear(3, 1, dtype=dtype, rng=rng))
    z = Tensor(np.zeros((0, 5), dtype))
    h = G(z)
    out = D(h)
    assert h.shape == (0, 12) and out.shape == (0, 1) and out.dtype == dtype
    F.binary_cross_entropy_with_logits(out, 1.0, reduction="none").sum().backward()
    for name, p in list(G.named_parameters()) + list(D.named_parameters()):
        assert p.grad.shape == p.shape and p.grad.dtype == dtype and not p.grad.any(), name


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid"])
def test_a_zero_row_batch_through_linear(kernel_path, activation):
    x = Tensor(np.zeros((0, 5), np.float32), requires_grad=True)
    lin = nn.Linear(5, 7, rng=np.random.default_rng(0))
    y = lin(x, activation=activation)
    assert y.shape == (0, 7)
    y.sum().backward()
    assert x.grad.shape == (0, 5) and lin.weight.grad.shape == (5, 7)
    assert not lin.weight.grad.any() and not lin.bias.grad.any()


@pytest.mark.parametrize("op", ["relu", "sigmoid", "tanh", "softplus", "log_sigmoid", "exp",
                                "maxout", "dropout", "log_softmax"])
def test_a_zero_row_batch_through_ops(kernel_path, op):
    x = Tensor(np.zeros((0, 4), np.float32), requires_grad=True)
    y = {"maxout": lambda t: F.maxout(t, 2),
         "dropout": lambda t: F.dropout(t, 0.5, rng=np.random.default_rng(0)),
         "log_softmax": F.log_softmax}.get(op, getattr(F, op, None))(x)
    assert y.shape == ((0, 2) if op == "maxout" else (0, 4))
    y.sum().backward()
    assert x.grad.shape == (0, 4)


def test_a_mean_over_a_zero_row_batch_is_refused(kernel_path):
    logits = Tensor(np.zeros((0, 1), np.float32), requires_grad=True)
    with pytest.raises(ValueError, match=r"mean over zero elements.*\(0, 1\)"):
        F.binary_cross_entropy_with_logits(logits, 1.0)          # reduction="mean"
    with pytest.raises(ValueError, match="mean over zero elements"):
        F.cross_entropy(Tensor(np.zeros((0, 3))), np.zeros(0, np.int64))
    assert Tensor(np.zeros((0, 3))).mean(axis=1).shape == (0,)  # a mean of 3 each, 0 times


@pytest.mark.parametrize("pieces", [0, -2, 2.0, True])
def test_maxout_refuses_bad_pieces(kernel_path, pieces):
    with pytest.raises(ValueError, match=r"pieces must be a positive integer"):
        F.maxout(Tensor(np.ones((2, 4))), pieces)


def test_maxout_refuses_pieces_that_do_not_divide(kernel_path):
    with pytest.raises(ValueError, match=r"\(2, 5\).*multiple of pieces=2"):
        F.maxout(Tensor(np.ones((2, 5))), 2)
    with pytest.raises(ValueError, match="multiple of pieces"):
        F.maxout(Tensor(np.array(1.0)), 1)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_refuses_p_outside_0_1(kernel_path, p):
    with pytest.raises(ValueError, match="dropout probability must be in"):
        F.dropout(Tensor(np.ones((2, 4))), p, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(p)


def test_gaussian_nll_closed_form():
    mu = np.array([[0.0, 1.0], [2.0, -1.0]])
    t = np.array([[0.5, 1.0], [0.0, 0.0]])
    # std 1: 0.5 (t - mu)^2 + 0.5 log 2 pi per element, summed over the 2 codes
    rows = [0.5 * 0.25 + 0.5 * 0 + math.log(2 * math.pi), 0.5 * 4 + 0.5 * 1 + math.log(2 * math.pi)]
    got = F.gaussian_nll(Tensor(mu), t, reduction="none").numpy()
    np.testing.assert_allclose(got, rows, rtol=1e-12)
    assert F.gaussian_nll(Tensor(mu), t).item() == pytest.approx(np.mean(rows), rel=1e-12)
    # learned std: the same as SciPy-free N(t; mu, s^2) by hand
    log_s = np.array([[0.3, -0.2], [0.0, 1.0]])
    s = np.exp(log_s)
    want = (0.5 * ((t - mu) / s) ** 2 + log_s + 0.5 * math.log(2 * math.pi)).sum(1)
    got = F.gaussian_nll(Tensor(mu), t, Tensor(log_s), reduction="none").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # a fixed std given as a number matches the tensor form
    fixed = F.gaussian_nll(Tensor(mu), t, 0.3, reduction="none").numpy()
    np.testing.assert_allclose(fixed, F.gaussian_nll(Tensor(mu), t, Tensor(np.full_like(mu, 0.3)),
                                                           reduction="none").numpy(), rtol=1e-12)


def test_mse_loss_values_and_mask():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([[1.0, 0.0], [0.0, 4.0]])
    assert F.mse_loss(Tensor(a), b).item() == pytest.approx((4 + 9) / 4)
    m = np.array([[1, 1], [0, 0]])
    assert F.mse_loss(Tensor(a), b, m).item() == pytest.approx(4 / 2)
