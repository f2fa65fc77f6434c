"""Higher derivatives: npgan.grad, create_graph=True, gradgradcheck.

Every op's double backward is checked against finite differences of its
first derivative (gradgradcheck, float64), on the compiled kernels and on the
NumPy references (``kernel_path``); then Hessian-vector products, a WGAN-GP
style gradient penalty, a differentiable SGD step, and the errors.
"""
import numpy as np
import pytest

import npgan
from npgan import GradcheckError, Tensor, grad, gradcheck, gradgradcheck, nn, settings
from npgan import functional as F
from npgan.tensor import _vals

from conftest import away_from_zero, with_params


def R(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.fixture(params=["compiled", "reference"])
def kernel_path(request):
    """Run a test on the compiled kernels (where built) and on the NumPy references."""
    with settings.override(kernels=settings.kernels() and request.param == "compiled"):
        yield request.param


# ------------------------------------------------------------------ every op, twice differentiated

def _drop(x):
    return F.dropout(x, 0.5, rng=np.random.default_rng(3))


OPS = {   # name: (fn, inputs); inputs away from kinks (relu, clip, max, maxout ties)
    "add_sub_broadcast": (lambda a, b: (a + b) * (a - b), R(3, 4), R(1, 4, seed=1)),
    "mul_div": (lambda a, b: a * b / (b * b + 1.0), R(3, 4), R(4, seed=1)),
    "neg_rsub_rdiv": (lambda a: (2.0 - (-a)) * (1.0 / (a * a + 1.0)), R(3, 4)),
    "pow": (lambda a: (a * a + 1.0) ** 1.5 + a ** 3 + a ** 0, R(3, 4)),
    "matmul": (lambda a, b: (a @ b) ** 2, R(3, 4), R(4, 2, seed=1)),
    "exp_log": (lambda a: (a.exp() + 1.0).log() * a, R(3, 4)),
    "tanh": (lambda a: a.tanh(), R(3, 4)),
    "relu": (lambda a: a.relu() * a, away_from_zero(R(3, 4))),
    "sigmoid": (lambda a: a.sigmoid(), R(3, 4) * 3),
    "softplus": (lambda a: a.softplus(), R(3, 4) * 3),
    "log_sigmoid": (lambda a: a.log_sigmoid(), R(3, 4) * 3),
    "clip": (lambda a: a.clip(-0.5, 0.5) * a, away_from_zero(R(3, 4)) + 0.05),
    "sum_mean": (lambda a: (a ** 3).sum(axis=1) + (a * a).mean(axis=(0, 1), keepdims=True)
                 + (a * a).sum(), R(3, 4)),
    "max": (lambda a: (a * a).max(axis=1) + a.max() ** 2, R(3, 4)),
    "getitem": (lambda a: a[np.array([0, 0, 2]), 1:] ** 2 + a[1, :3] ** 3, R(3, 4)),
    "reshape_transpose": (lambda a: (a.reshape(4, 3).T * a) ** 2 + a.T.reshape(3, 4) ** 3,
                          R(3, 4)),
    "concatenate": (lambda a, b: npgan.concatenate([a, b * a[:, :2]], axis=-1) ** 3,
                    R(2, 3), R(2, 2, seed=1)),
    "linear": (lambda x, w, b: F.linear(x, w, b) ** 2, R(3, 4), R(4, 2, seed=1), R(2, seed=2)),
    "linear_no_bias": (lambda x, w: F.linear(x, w) ** 2, R(3, 4), R(4, 2, seed=1)),
    "linear_relu": (lambda x, w, b: F.linear(x, w, b, "relu") * F.linear(x, w, b),
                    R(3, 4), R(4, 2, seed=1), R(2, seed=2) + 3.0),
    "linear_sigmoid": (lambda x, w, b: F.linear(x, w, b, "sigmoid"),
                       R(3, 4), R(4, 2, seed=1), R(2, seed=2)),
    "linear_general_route": (lambda x, w, b: F.linear(x, w, b, "sigmoid"),   # bias (1, out)
                             R(3, 4), R(4, 2, seed=1), R(1, 2, seed=2)),
    "maxout": (lambda x: x.maxout(3) ** 2, R(2, 6)),
    "maxout_layer": (lambda x, w: F.maxout(F.linear(x, w), 2) ** 2, R(2, 3), R(3, 4, seed=1)),
    "dropout": (lambda x: _drop(x * x), R(4, 6)),
    "bce_const_targets": (lambda l: F.binary_cross_entropy_with_logits(l, 0.0)
                          + F.binary_cross_entropy_with_logits(l, 1.0)
                          + F.binary_cross_entropy_with_logits(l, 0.3), R(2, 3) * 3),
    "bce_array_targets": (lambda l, t: F.binary_cross_entropy_with_logits(l, t, reduction="none"),
                          R(2, 3) * 3, np.random.default_rng(1).random((2, 3))),
    "log_softmax": (lambda a: F.log_softmax(a) * a, R(3, 4)),
    "cross_entropy": (lambda a: F.cross_entropy(a, np.array([0, 2, 1])), R(3, 4)),
}


@pytest.mark.parametrize("name", OPS)
def test_every_op_has_a_correct_double_backward(kernel_path, name):
    fn, *inputs = OPS[name]
    assert gradgradcheck(fn, *inputs)


def test_new_ops_first_derivatives():
    """gradgradcheck takes the first derivative as right (it differences it):
    the ops added for create_graph pass gradcheck themselves."""
    w = R(2, 3, 4, seed=1)
    assert gradcheck(lambda a: a.broadcast_to((2, 3, 4)) * w, R(3, 1))
    assert gradcheck(lambda a: a.astype("float64") * a, R(3))
    assert gradgradcheck(lambda a: a.broadcast_to((2, 3, 4)) ** 3, R(3, 1))
    x = Tensor(R(3).astype(np.float32), requires_grad=True)
    (g,) = grad((x.astype(np.float64) ** 2).sum(), x)          # float32 in, float32 gradient
    assert g.dtype == np.float32
    np.testing.assert_allclose(g.data, 2 * x.data, rtol=1e-6)
    with pytest.raises(TypeError, match="floating point"):
        x.astype(np.int32)


@pytest.mark.parametrize("name", ["linear_sigmoid", "maxout_layer", "dropout", "bce_const_targets"])
def test_random_direction_mode(kernel_path, name):
    fn, *inputs = OPS[name]
    assert gradgradcheck(fn, *inputs, mode="random", n_directions=2)


def test_paper_discriminator_block_twice_differentiable(kernel_path):
    """dropout -> maxout layer -> dropout -> linear -> BCE, as the paper's D."""
    def d_loss(x, w1, b1, w2):
        h = _drop(F.maxout(F.linear(_drop(x), w1, b1), 2))
        return F.binary_cross_entropy_with_logits(F.linear(h, w2), 1.0)
    assert gradgradcheck(d_loss, R(3, 4), R(4, 6, seed=1), R(6, seed=2), R(3, 1, seed=3))


# ------------------------------------------------------------------ grad(): semantics

def test_grad_returns_gradients_without_touching_dot_grad():
    x = Tensor(R(3, 4), requires_grad=True)
    w = Tensor(R(4, 2, seed=1), requires_grad=True)
    gx, gw = grad(F.linear(x, w, activation="sigmoid").sum(), [x, w])
    assert x.grad is None and w.grad is None
    assert gx.shape == (3, 4) and gw.shape == (4, 2) and gx.dtype == np.float64
    assert not gx.requires_grad and gx._parents == ()       # no history without create_graph
    F.linear(x, w, activation="sigmoid").sum().backward()
    np.testing.assert_allclose(gx.data, x.grad, rtol=1e-12)
    np.testing.assert_allclose(gw.data, w.grad, rtol=1e-12)


def test_grad_with_create_graph_has_history_and_matches_the_fast_path(kernel_path):
    x = Tensor(R(5, 3).astype(np.float32), requires_grad=True)
    y = (F.linear(x, R(3, 4).astype(np.float32), activation="relu").softplus() * x[:, :1]).mean()
    (g1,) = grad(y, x, create_graph=True)
    (g0,) = grad(y, x)
    assert g1.requires_grad and g1.dtype == np.float32 and g1.shape == (5, 3)
    np.testing.assert_allclose(g1.data, g0.data, rtol=1e-5, atol=1e-7)


def test_grad_outputs_weight_the_outputs():
    x = Tensor(R(3), requires_grad=True)
    v = R(3, seed=1)
    (g,) = grad(x * x, x, grad_outputs=v)           # d <v, x^2> / dx = 2 v x
    np.testing.assert_allclose(g.data, 2 * v * x.data)
    (g,) = grad([x * x, x.sum()], x, grad_outputs=[v, None])
    np.testing.assert_allclose(g.data, 2 * v * x.data + 1)
    with pytest.raises(RuntimeError, match=r"single-element.*\(3,\)"):
        grad(x * x, x)


def test_grad_results_do_not_alias_the_callers_arrays():
    x = Tensor(R(3), requires_grad=True)
    y = x * 2.0
    v = R(3, seed=1)
    (gy,) = grad(y, y, grad_outputs=v)
    gy.data[0] += 1.0
    assert v[0] == R(3, seed=1)[0]


def test_grad_wrt_an_intermediate_result_and_through_it():
    x = Tensor(R(4), requires_grad=True)
    h = x * 3.0
    y = (h * h).sum() + x.sum()
    gh, gx = grad(y, [h, x])
    np.testing.assert_allclose(gh.data, 2 * h.data)
    np.testing.assert_allclose(gx.data, 6 * h.data + 1)      # through h and directly


def test_unused_input_raises_or_gets_zeros():
    x, z = Tensor(R(3), requires_grad=True), Tensor(R(2), requires_grad=True)
    y = (x * x).sum()
    with pytest.raises(RuntimeError, match=r"input 1 \(shape \(2,\)\) is not used"):
        grad(y, [x, z])
    with pytest.raises(RuntimeError, match="input 0 .* does not require grad"):
        grad(y, [Tensor(R(3))])
    gx, gz = grad(y, [x, z], allow_unused=True)
    assert gz.shape == (2,) and not gz.data.any() and gx.data.any()


def test_backward_create_graph_leaves_tensors_in_grad_that_differentiate_again():
    x = Tensor(np.array([1.0, 2.0, -0.5]), requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    assert isinstance(x.grad, Tensor) and x.grad.requires_grad
    np.testing.assert_allclose(x.grad.data, 3 * x.data ** 2)
    gx = x.grad
    x.grad = None
    gx.sum().backward()                             # d/dx sum 3x^2 = 6x, an array again
    assert isinstance(x.grad, np.ndarray)
    np.testing.assert_allclose(x.grad, 6 * x.data)
    (x * x).sum().backward(create_graph=True)       # an array .grad plus a Tensor: a Tensor
    assert isinstance(x.grad, Tensor)
    np.testing.assert_allclose(x.grad.data, 8 * x.data)


def test_derivatives_of_any_order():
    """d/dx of x^4 summed, three times with create_graph, then once more: 4x^3,
    12x^2, 24x, 24 (through pow, mul, sum, getitem, dropout's own backward)."""
    x = Tensor(np.array([0.5, -1.5, 2.0, 1.0]), requires_grad=True)
    keep = np.ones(4)
    y = (F.dropout(x, 0.5, rng=np.random.default_rng(0)) * 0.5) ** 4
    mask = (F.dropout(Tensor(keep), 0.5, rng=np.random.default_rng(0)).data > 0).astype(float)
    g = y[np.array([0, 1, 2, 3])].sum()
    for k, want in enumerate([4 * x.data ** 3, 12 * x.data ** 2, 24 * x.data, 24 + 0 * x.data]):
        (g,) = grad(g, x, create_graph=k < 3)
        np.testing.assert_allclose(g.data, want * mask, rtol=1e-12)
        g = g.sum()


def test_the_first_order_path_builds_no_graph():
    x = Tensor(R(3, 4), requires_grad=True)
    x.sigmoid().sum().backward()
    assert isinstance(x.grad, np.ndarray)


# ------------------------------------------------------------------ Hessian-vector products

def hvp(f, x, v):
    """H v for the scalar f(x) (x one Tensor): the gradient of <grad f, v>."""
    (g,) = grad(f(x), x, create_graph=True)
    return grad((g * v).sum(), x)[0].data


def test_hvp_of_a_quadratic_form_is_A_plus_A_transpose_times_v():
    A, v = R(5, 5), R(5, seed=1)
    x = Tensor(R(5, seed=2), requires_grad=True)
    f = lambda t: (t.reshape(1, 5) @ A @ t.reshape(5, 1)).sum()        # noqa: E731
    np.testing.assert_allclose(hvp(f, x, v), (A + A.T) @ v, rtol=1e-12, atol=1e-12)


def test_hvp_of_softplus_sum_is_diagonal_sigmoid_prime():
    xs, v = R(6) * 3, R(6, seed=1)
    s = 1 / (1 + np.exp(-xs))
    np.testing.assert_allclose(hvp(lambda t: t.softplus().sum(), Tensor(xs, requires_grad=True), v),
                               s * (1 - s) * v, rtol=1e-12)


def test_hvp_of_a_small_gan_loss_matches_a_finite_difference(kernel_path):
    """The loss of a 2-layer discriminator, as a function of all its weights
    flattened: H v against (grad f(x + e v) - grad f(x - e v)) / 2e."""
    xb, shapes = R(8, 3), [(3, 6), (6,), (3, 1)]
    sizes = [int(np.prod(s)) for s in shapes]

    def f(theta):
        parts, i = [], 0
        for s, n in zip(shapes, sizes):
            parts.append(theta[i:i + n].reshape(s))
            i += n
        h = F.maxout(F.linear(xb, parts[0], parts[1], activation="sigmoid"), 2)
        return F.binary_cross_entropy_with_logits(F.linear(h, parts[2]).tanh(), 0.7)

    theta, v = R(sum(sizes), seed=1), R(sum(sizes), seed=2)
    eps = 1e-5
    def gradient(th):
        t = Tensor(th, requires_grad=True)
        return grad(f(t), t)[0].data
    numeric = (gradient(theta + eps * v) - gradient(theta - eps * v)) / (2 * eps)
    np.testing.assert_allclose(hvp(f, Tensor(theta, requires_grad=True), v), numeric,
                               rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ gradient penalty, unrolled step

def _penalty(D):
    """WGAN-GP style: mean over the batch of (||grad_x D(x)||_2 - 1)^2."""
    def penalty(x):
        (gx,) = grad(D(x).sum(), x, create_graph=True)    # x: the points, requires grad
        return (((gx * gx).sum(axis=1) ** 0.5 - 1.0) ** 2).mean()
    return penalty


def test_gradient_penalty_of_a_linear_critic_has_its_closed_form_gradient():
    """D(x) = x w + b: grad_x D = w for every x, penalty (|w| - 1)^2, whose
    gradient in w is 2 (|w| - 1) w / |w|; b does not enter it."""
    D = nn.Linear(3, 1, dtype="float64", init="normal", std=1.0, rng=np.random.default_rng(0))
    _penalty(D)(Tensor(R(5, 3), requires_grad=True)).backward()
    w = D.weight.data
    n = np.linalg.norm(w)
    np.testing.assert_allclose(D.weight.grad, 2 * (n - 1) * w / n, rtol=1e-12)
    assert D.bias.grad is None


class FixedDropout(nn.Module):
    """Dropout with the same mask at every call: a deterministic critic."""
    def forward(self, x):
        return _drop(x)


@pytest.mark.parametrize("hidden", ["tanh", "maxout"])
def test_gradient_penalty_gradient_wrt_critic_parameters(kernel_path, hidden):
    """d penalty / d (points, every parameter) against finite differences."""
    rng = np.random.default_rng(0)
    kw = dict(dtype="float64", init="normal", std=0.8, rng=rng)
    if hidden == "tanh":
        D = nn.Sequential(nn.Linear(3, 4, **kw), nn.Tanh(), nn.Linear(4, 1, **kw))
    else:
        D = nn.Sequential(nn.Maxout(3, 3, 2, **kw), FixedDropout(), nn.Linear(3, 1, **kw))
    fn, params = with_params(D, _penalty(D))
    assert gradcheck(fn, R(6, 3), *params)


def test_gradient_through_a_differentiable_sgd_step():
    """Unrolled: theta1 = theta - lr grad L1(theta); d L2(theta1) / d theta."""
    xb = R(6, 3)
    def unrolled(w):
        l1 = F.binary_cross_entropy_with_logits(F.linear(xb, w), 1.0)
        (g,) = grad(l1, w, create_graph=True)
        w1 = w - 0.5 * g
        return F.binary_cross_entropy_with_logits(F.linear(xb, w1, activation="sigmoid"), 0.2)
    assert gradcheck(unrolled, R(3, 2, seed=1))


# ------------------------------------------------------------------ gradgradcheck catches errors

def square(graph_factor=1.0, constant_x=False, first_error=0.0):
    """x**2 with a hand-written backward; its create_graph branch can be broken:
    scaled (graph_factor), treating x as a constant (second derivative 0), or
    with a first derivative off by first_error (its second one right)."""
    def op(x):
        def backward(g):
            if not isinstance(g, Tensor):
                return (2 * g * x.data,)
            X = x.data if constant_x else _vals(g, x)[0]
            return (g * 2 * X * graph_factor + first_error,)
        return Tensor.make(x.data ** 2, (x,), backward, "square", graph=True)
    return op


def test_a_correct_hand_written_double_backward_passes():
    assert gradgradcheck(square(), R(2, 3))
    assert gradgradcheck(square(), R(2, 3), mode="random")


@pytest.mark.parametrize("mode", ["full", "random"])
def test_double_backward_that_treats_x_as_constant_is_caught(mode):
    with pytest.raises(GradcheckError) as e:
        gradgradcheck(square(constant_x=True), R(2, 3), mode=mode)
    msg = str(e.value)
    assert "ok   first derivative of input 0" in msg       # the first derivative is right
    assert ("FAIL input 0 (2, 3) and input 0 (2, 3)" if mode == "full" else "FAIL direction 0") in msg
    assert "max abs err" in msg and "worst at index" in msg


def test_scaled_double_backward_is_caught():
    with pytest.raises(GradcheckError, match="FAIL input 0"):
        gradgradcheck(square(graph_factor=1.01), R(2, 3))


def test_create_graph_first_derivative_that_differs_is_caught():
    with pytest.raises(GradcheckError, match="FAIL first derivative of input 0"):
        gradgradcheck(square(first_error=1e-3), R(2, 3))


def test_worst_hessian_element_is_reported():
    """A double backward wrong in one Hessian entry only: d2/dx(1,2)^2."""
    mask = np.zeros((2, 3))
    mask[1, 2] = 1.0
    def op(x):
        def backward(g):
            X = _vals(g, x)[0]
            gx = 2 * g * X
            return (gx + (X - x.data) * mask if isinstance(g, Tensor) else gx,)
        return Tensor.make(x.data ** 2, (x,), backward, "square", graph=True)
    with pytest.raises(GradcheckError) as e:
        gradgradcheck(op, R(2, 3))
    assert "worst at index (1, 2, 1, 2)" in str(e.value)
    assert "max abs err 1.000e+00" in str(e.value)


def test_gradgradcheck_names_the_pair_of_inputs_that_fails():
    def op(a, b):     # d2/da db wrong: the create_graph branch forgets b in a's gradient
        def backward(g):
            A, B = _vals(g, a, b)
            ga = g * (b.data if isinstance(g, Tensor) else B)
            return (ga, g * A)
        return Tensor.make(a.data * b.data, (a, b), backward, "mul", graph=True)
    with pytest.raises(GradcheckError) as e:
        gradgradcheck(op, R(2, 2), R(2, 2, seed=1))
    msg = str(e.value)
    assert "FAIL input 0 (2, 2) and input 1 (2, 2)" in msg
    assert "ok   input 1 (2, 2) and input 0 (2, 2)" in msg     # b's gradient is right


# ------------------------------------------------------------------ errors

def cube_once(x):
    """A custom op with a first-order backward only."""
    return Tensor.make(x.data ** 3, (x,), lambda g: (3 * g * x.data ** 2,), "my_cube")


def test_second_derivative_through_an_op_without_one_names_it():
    x = Tensor(R(3), requires_grad=True)
    (g,) = grad(cube_once(x).sum(), x)              # first order: fine
    np.testing.assert_allclose(g.data, 3 * x.data ** 2)
    with pytest.raises(RuntimeError, match="op 'my_cube' has no differentiable backward"):
        grad((cube_once(x) * 2.0).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="'my_cube'"):
        cube_once(x).sum().backward(create_graph=True)
    with pytest.raises(GradcheckError, match="'my_cube'"):
        gradgradcheck(cube_once, R(3))


def test_create_graph_under_no_grad_is_refused():
    x = Tensor(R(3), requires_grad=True)
    y = (x * x).sum()
    with npgan.no_grad():
        with pytest.raises(RuntimeError, match="create_graph=True inside no_grad"):
            grad(y, x, create_graph=True)
        with pytest.raises(RuntimeError, match="create_graph=True inside no_grad"):
            y.backward(create_graph=True)
        (g,) = grad(y, x)                           # first order works there
    np.testing.assert_allclose(g.data, 2 * x.data)


def test_gradgradcheck_refuses_float32_and_a_bad_mode():
    with pytest.raises(GradcheckError, match="float32"):
        gradgradcheck(lambda t: t.astype(np.float32) * 2.0, R(3))
    with pytest.raises(ValueError, match="mode"):
        gradgradcheck(lambda t: t * t, R(3), mode="fast")


# ------------------------------------------------------------------ backend neutrality

@pytest.mark.parametrize("name", ["linear_sigmoid", "linear_relu", "maxout_layer", "dropout",
                                  "bce_array_targets", "log_softmax", "cross_entropy", "getitem",
                                  "max", "sum_mean", "concatenate", "exp_log", "tanh", "mul_div"])
def test_double_backward_on_a_strict_device_backend(name):
    """create_graph goes through backend.xp only (tests/strict_xp.py refuses
    NumPy calls on device arrays, as CuPy would)."""
    from strict_xp import strict
    fn, *inputs = OPS[name]
    prev = npgan.backend.set_module(strict, "strict")
    try:
        assert gradgradcheck(fn, *inputs, mode="random", n_directions=1)
    finally:
        npgan.backend.set_module(*prev)
