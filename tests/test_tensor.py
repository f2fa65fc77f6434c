"""Tensor ops (gradcheck in float64, closed forms) and the autograd engine."""
import gc

import numpy as np
import pytest

import npgan
from npgan import Tensor, gradcheck, no_grad, concatenate

from conftest import away_from_zero


def R(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def P(*shape, seed=0):
    """Positive values in [0.5, 2]."""
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape)


# ----------------------------------------------------------------------------- gradcheck of every op

BINARY = [
    ("add (3,1,4)+(4,)", lambda a, b: a + b, R(3, 1, 4), R(4, seed=1)),
    ("add (4,)+(3,1,4)", lambda a, b: a + b, R(4), R(3, 1, 4, seed=1)),
    ("add (2,1)+(1,3)", lambda a, b: a + b, R(2, 1), R(1, 3, seed=1)),
    ("add scalar-shape", lambda a, b: a + b, R(), R(2, 3, seed=1)),
    ("sub (3,1,4)-(3,5,1)", lambda a, b: a - b, R(3, 1, 4), R(3, 5, 1, seed=1)),
    ("mul (2,3)*(2,1)", lambda a, b: a * b, R(2, 3), R(2, 1, seed=1)),
    ("mul (3,1)*(3,)", lambda a, b: a * b, R(3, 1), R(3, seed=1)),
    ("mul (2,3)*(2,3)", lambda a, b: a * b, R(2, 3), R(2, 3, seed=1)),
    ("div (2,3)/(3,)", lambda a, b: a / b, R(2, 3), P(3, seed=1)),
    ("div (3,)/(2,3)", lambda a, b: a / b, R(3), P(2, 3, seed=1)),
    ("matmul (3,4)@(4,2)", lambda a, b: a @ b, R(3, 4), R(4, 2, seed=1)),
    ("matmul (1,5)@(5,1)", lambda a, b: a @ b, R(1, 5), R(5, 1, seed=1)),
    ("same tensor twice", lambda a, b: a * a + b, R(2, 3), R(3, seed=1)),
]


@pytest.mark.parametrize("name,fn,a,b", BINARY, ids=[c[0] for c in BINARY])
def test_gradcheck_binary(name, fn, a, b):
    assert gradcheck(fn, a, b)


UNARY = [
    ("neg", lambda x: -x, R(2, 3)),
    ("radd", lambda x: 2.5 + x, R(2, 3)),
    ("rsub", lambda x: 2.5 - x, R(2, 3)),
    ("rmul", lambda x: 2.5 * x, R(2, 3)),
    ("rtruediv", lambda x: 2.5 / x, P(2, 3)),
    ("ndarray - Tensor", lambda x: R(4, 2, 3, seed=5) - x, R(2, 3)),
    ("ndarray @ Tensor", lambda x: R(2, 4, seed=5) @ x, R(4, 3)),
    ("pow 2", lambda x: x ** 2, R(2, 3)),
    ("pow 3", lambda x: x ** 3, R(2, 3)),
    ("pow -1.5", lambda x: x ** -1.5, P(2, 3)),
    ("pow 0.5", lambda x: x ** 0.5, P(2, 3)),
    ("sum", lambda x: x.sum(), R(2, 3, 4)),
    ("sum axis 1", lambda x: x.sum(axis=1), R(2, 3, 4)),
    ("sum axis -1 keepdims", lambda x: x.sum(axis=-1, keepdims=True), R(2, 3, 4)),
    ("sum axes (0,2)", lambda x: x.sum(axis=(0, 2)), R(2, 3, 4)),
    ("sum axes (0,-1) keepdims", lambda x: x.sum(axis=(0, -1), keepdims=True), R(2, 3, 4)),
    ("mean", lambda x: x.mean(), R(2, 3, 4)),
    ("mean axis 0", lambda x: x.mean(axis=0), R(2, 3, 4)),
    ("mean axes (1,2) keepdims", lambda x: x.mean(axis=(1, 2), keepdims=True), R(2, 3, 4)),
    ("mean axis -2", lambda x: x.mean(axis=-2), R(2, 3, 4)),
    ("max", lambda x: x.max(), R(2, 3, 4)),
    ("max keepdims", lambda x: x.max(keepdims=True), R(2, 3, 4)),
    ("max axis 1", lambda x: x.max(axis=1), R(2, 3, 4)),
    ("max axis -1 keepdims", lambda x: x.max(axis=-1, keepdims=True), R(2, 3, 4)),
    ("max axes (0,2)", lambda x: x.max(axis=(0, 2)), R(2, 3, 4)),
    ("reshape", lambda x: x.reshape(4, 6), R(2, 3, 4)),
    ("reshape tuple -1", lambda x: x.reshape((-1, 2)), R(2, 3, 4)),
    ("transpose", lambda x: x.transpose(), R(2, 3, 4)),
    ("transpose axes", lambda x: x.transpose(1, 2, 0) * R(3, 4, 2, seed=7), R(2, 3, 4)),
    ("transpose tuple", lambda x: x.transpose((2, 0, 1)) * R(4, 2, 3, seed=7), R(2, 3, 4)),
    ("transpose negative axes", lambda x: x.transpose(0, -1, 1) * R(2, 4, 3, seed=7), R(2, 3, 4)),
    ("transpose negative square", lambda x: x.transpose(-1, 0, -2) * R(3, 3, 3, seed=7), R(3, 3, 3)),
    (".T", lambda x: x.T @ R(2, 2, seed=7), R(2, 3)),
    ("getitem int", lambda x: x[1], R(3, 4)),
    ("getitem slice", lambda x: x[1:, ::2], R(3, 4)),
    ("getitem negative step", lambda x: x[::-1, 1:3], R(3, 4)),
    ("getitem int array repeated", lambda x: x[np.array([0, 2, 0, 0, 1])], R(3, 4)),
    ("getitem pair of arrays repeated", lambda x: x[np.array([0, 0, 2]), np.array([1, 1, 3])], R(3, 4)),
    ("getitem array + slice", lambda x: x[np.array([2, 2]), 1:], R(3, 4)),
    ("getitem bool mask", lambda x: x[np.array([True, False, True])], R(3, 4)),
    ("getitem list", lambda x: x[[1, 1]], R(3, 4)),
    ("exp", lambda x: x.exp(), R(2, 3)),
    ("log", lambda x: x.log(), P(2, 3)),
    ("tanh", lambda x: x.tanh(), R(2, 3)),
    ("relu", lambda x: x.relu(), away_from_zero(R(3, 5))),
    ("sigmoid", lambda x: x.sigmoid(), 3 * R(3, 5)),
    ("softplus", lambda x: x.softplus(), 3 * R(3, 5)),
    ("log_sigmoid", lambda x: x.log_sigmoid(), 3 * R(3, 5)),
    ("clip both", lambda x: x.clip(-0.5, 0.5), away_from_zero(R(3, 5), 0.01) + 0.05),
    ("clip lo", lambda x: x.clip(lo=0.0), away_from_zero(R(3, 5))),
    ("clip hi", lambda x: x.clip(hi=0.0), away_from_zero(R(3, 5))),
    ("maxout 3", lambda x: x.maxout(3), R(4, 6)),
    ("maxout 1", lambda x: x.maxout(1), R(4, 6)),
    ("maxout 3-d", lambda x: x.maxout(2), R(2, 3, 4)),
    ("ops on 0-d", lambda x: (x.sum() * 2.0).sigmoid().softplus().log_sigmoid().relu().exp(), R(2, 2)),
]


@pytest.mark.parametrize("name,fn,x", UNARY, ids=[c[0] for c in UNARY])
def test_gradcheck_unary(name, fn, x):
    assert gradcheck(fn, x)


def test_clip_inputs_are_clear_of_the_edges():
    """The clip case above must not sit on a kink (or finite differences lie)."""
    x = away_from_zero(R(3, 5), 0.01) + 0.05
    assert np.all(np.abs(np.abs(x) - 0.5) > 1e-3)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gradcheck_concatenate(axis):
    assert gradcheck(lambda a, b, c: concatenate([a, b, c], axis=axis),
                     R(2, 3), R(2, 3, seed=1), R(2, 3, seed=2))


def test_gradcheck_concatenate_uneven_and_constant():
    c = Tensor(R(1, 3, seed=9))      # no grad: its slice of g is dropped
    assert gradcheck(lambda a, b: concatenate([a, c, b], axis=0) * 2.0, R(2, 3), R(4, 3, seed=1))


def test_ops_on_0d_keep_shape():
    """Elementwise ops on a 0-d tensor return a 0-d tensor (compiled path too)."""
    t = Tensor(np.float64(0.3))
    for op in ("exp", "tanh", "relu", "sigmoid", "softplus", "log_sigmoid"):
        assert getattr(t, op)().shape == (), op
    t32 = Tensor(np.float32(0.3))
    for op in ("relu", "sigmoid", "softplus", "log_sigmoid"):
        assert getattr(t32, op)().shape == (), op


# ----------------------------------------------------------------------------- closed forms

def test_unbroadcast_sums_exactly():
    a, b = R(3, 1, 4), R(4, seed=1)
    w = R(3, 5, 4, seed=2)
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    tc = Tensor(R(5, 1, seed=3), requires_grad=True)
    out = ta + tb + tc
    assert out.shape == (3, 5, 4)
    out.backward(w)
    np.testing.assert_allclose(ta.grad, w.sum(axis=1, keepdims=True), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(tb.grad, w.sum(axis=(0, 1)), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(tc.grad, w.sum(axis=(0, 2))[:, None], rtol=1e-14, atol=1e-14)
    assert ta.grad.shape == (3, 1, 4) and tb.grad.shape == (4,) and tc.grad.shape == (5, 1)


def test_mul_div_broadcast_closed_form():
    a, b = R(2, 3), P(3, 1)[:, 0][None, :]          # (1, 3)
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    (ta / tb).sum().backward()
    np.testing.assert_allclose(ta.grad, np.broadcast_to(1 / b, (2, 3)), rtol=1e-14)
    np.testing.assert_allclose(tb.grad, (-a / b ** 2).sum(axis=0, keepdims=True), rtol=1e-13)


def test_matmul_closed_form():
    a, b, w = R(3, 4), R(4, 2, seed=1), R(3, 2, seed=2)
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    (ta @ tb).backward(w)
    np.testing.assert_allclose(ta.grad, w @ b.T, rtol=1e-13)
    np.testing.assert_allclose(tb.grad, a.T @ w, rtol=1e-13)


def test_log_sigmoid_derivative_is_one_minus_sigmoid():
    x = np.linspace(-20, 20, 81)
    t = Tensor(x, requires_grad=True)
    t.log_sigmoid().sum().backward()
    np.testing.assert_allclose(t.grad, 1 / (1 + np.exp(x)), rtol=1e-13)          # 1 - sigma(x)
    np.testing.assert_allclose(t.log_sigmoid().data, -np.log1p(np.exp(-x)), rtol=1e-13, atol=1e-300)


def test_softplus_derivative_is_sigmoid():
    x = np.linspace(-20, 20, 81)
    t = Tensor(x, requires_grad=True)
    t.softplus().sum().backward()
    np.testing.assert_allclose(t.grad, 1 / (1 + np.exp(-x)), rtol=1e-13)
    np.testing.assert_allclose(t.softplus().data, np.log1p(np.exp(x)), rtol=1e-13)


def test_sigmoid_and_tanh_derivatives():
    x = np.linspace(-10, 10, 41)
    t = Tensor(x, requires_grad=True)
    t.sigmoid().sum().backward()
    np.testing.assert_allclose(t.grad, 1 / ((1 + np.exp(-x)) * (1 + np.exp(x))), rtol=1e-13)
    t = Tensor(x, requires_grad=True)
    t.tanh().sum().backward()
    # 1 - tanh^2 cancels where tanh saturates: exact in absolute terms only
    np.testing.assert_allclose(t.grad, 1 / np.cosh(x) ** 2, rtol=1e-12, atol=1e-15)


def test_max_splits_gradient_among_ties():
    t = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]]), requires_grad=True)
    t.max(axis=1).sum().backward()
    np.testing.assert_array_equal(t.grad, [[0, 0.5, 0.5], [1, 0, 0]])
    t.grad = None
    t.max().backward()
    np.testing.assert_array_equal(t.grad, [[0, 0.5, 0.5], [0, 0, 0]])


def test_maxout_values_and_argmax_routing():
    x = np.array([[1.0, 5.0, 2.0, -1.0, -3.0, -2.0]])
    t = Tensor(x, requires_grad=True)
    y = t.maxout(3)
    np.testing.assert_array_equal(y.data, [[5.0, -1.0]])
    y.backward(np.array([[10.0, 20.0]]))
    np.testing.assert_array_equal(t.grad, [[0, 10, 0, 20, 0, 0]])
    with pytest.raises(ValueError, match="multiple of pieces"):
        t.maxout(4)


def test_getitem_repeated_indices_accumulate():
    t = Tensor(np.arange(4.0), requires_grad=True)
    t[np.array([1, 1, 1, 3])].sum().backward()
    np.testing.assert_array_equal(t.grad, [0, 3, 0, 1])


def test_clip_gradient_mask():
    t = Tensor(np.array([-2.0, -0.5, 0.0, 0.5, 2.0]), requires_grad=True)
    y = t.clip(-1.0, 1.0)
    np.testing.assert_array_equal(y.data, [-1, -0.5, 0, 0.5, 1])
    y.sum().backward()
    np.testing.assert_array_equal(t.grad, [0, 1, 1, 1, 0])


def test_relu_gradient_at_zero_is_zero():
    t = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    t.relu().sum().backward()
    np.testing.assert_array_equal(t.grad, [0, 0, 1])


def test_concatenate_values_and_split():
    a = Tensor(np.ones((2, 2)), requires_grad=True)
    b = Tensor(np.zeros((2, 3)), requires_grad=True)
    c = concatenate([a, b], axis=1)
    np.testing.assert_array_equal(c.data, np.hstack([np.ones((2, 2)), np.zeros((2, 3))]))
    w = np.arange(10.0).reshape(2, 5)
    c.backward(w)
    np.testing.assert_array_equal(a.grad, w[:, :2])
    np.testing.assert_array_equal(b.grad, w[:, 2:])


# ----------------------------------------------------------------------------- the engine

def test_gradients_accumulate_across_backward_calls():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [2 + 3, 4 + 3])
    x.zero_grad()
    assert x.grad is None


def test_diamond_graph_sums_both_paths():
    x = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    h = x * 2.0                  # used twice below
    y = (h * h + h.exp()).sum()
    y.backward()
    hv = 2 * x.data
    np.testing.assert_allclose(x.grad, 2 * (2 * hv + np.exp(hv)), rtol=1e-14)


def test_diamond_with_a_deep_and_a_shallow_branch():
    """A node reached by paths of different lengths gets its gradient only once
    both have arrived (generation order, not first-come)."""
    x = Tensor(np.array([1.5]), requires_grad=True)
    a = x * 1.0
    deep = a
    for _ in range(5):
        deep = deep * 2.0
    y = (deep + a * 3.0).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, [32.0 + 3.0])


def test_ten_thousand_deep_chain_without_recursion_error():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 10_000], rtol=1e-10)
    del y
    gc.collect()


def test_backward_of_non_scalar_needs_grad_and_names_the_shape():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        (x * 2.0).backward()


def test_backward_with_wrong_grad_shape_raises():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        (x * 2.0).backward(np.ones((3, 2)))


def _column_sum_op(x):
    """A custom op whose backward returns the wrong shape: (3,) for a (4, 3) input."""
    return Tensor.make(x.data.sum(axis=0), (x,), lambda g: (g,), "colsum")


def test_wrong_shaped_gradient_from_an_op_is_refused_naming_op_and_shapes():
    x = Tensor(np.ones((4, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"'colsum'.*\(3,\).*input 0 of shape \(4, 3\)"):
        _column_sum_op(x).sum().backward()
    assert x.grad is None          # nothing of the wrong shape reached the leaf


def test_wrong_shaped_gradient_deeper_in_the_graph_is_refused():
    # the bad op sits between two good ones: the check is per edge, not per leaf
    x = Tensor(np.ones((4, 3)), requires_grad=True)
    y = Tensor.make((x * 2.0).data[:, :2], (x * 2.0,), lambda g: (g,))   # (4, 2) for (4, 3)
    with pytest.raises(ValueError, match=r"<lambda>.*\(4, 2\).*\(4, 3\)"):
        y.relu().sum().backward()


def test_wrong_number_of_gradients_is_refused():
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    y = Tensor.make(a.data + b.data, (a, b), lambda g: (g,), "add1")
    with pytest.raises(ValueError, match=r"'add1' returned 1 gradients for its 2 inputs"):
        y.sum().backward()


def test_wrong_shaped_gradient_never_reaches_an_optimizer():
    from npgan import optim
    w = Tensor(np.ones((4, 3), dtype=np.float32), requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="colsum"):
        _column_sum_op(w).sum().backward()
    opt.step()                      # no gradient: nothing broadcast into the update
    np.testing.assert_array_equal(w.data, np.ones((4, 3)))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor(np.ones(2)) * 2.0).sum().backward()


def test_backward_on_a_leaf():
    x = Tensor(np.array([3.0]), requires_grad=True)
    x.backward()
    np.testing.assert_array_equal(x.grad, [1.0])


def test_no_grad_records_no_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        assert not npgan.is_grad_enabled()
        y = (x * 2.0).sigmoid().sum()
    assert npgan.is_grad_enabled()
    assert not y.requires_grad and y._parents == () and y._backward is None
    with pytest.raises(RuntimeError):
        y.backward()


def test_no_grad_restores_state_after_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert npgan.is_grad_enabled()


def test_detach_shares_data_but_not_history():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    d = (x * 2.0).detach()
    assert not d.requires_grad and d._parents == ()
    y = (d * x).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])       # d treated as a constant


def test_leaf_frozen_after_forward_gets_no_grad():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = Tensor(np.array([3.0, 4.0]), requires_grad=True)
    h = a * 2.0                 # a branch that only a feeds
    y = (h * b).sum()
    a.requires_grad = False     # frozen between forward and backward
    y.backward()
    assert a.grad is None
    np.testing.assert_array_equal(b.grad, [2.0, 4.0])
    assert h.requires_grad and y.requires_grad and not a.requires_grad   # state restored
    a.requires_grad = True
    y.backward()
    np.testing.assert_array_equal(a.grad, [6.0, 8.0])


def test_constant_operand_gets_no_grad():
    x = Tensor(np.ones(3), requires_grad=True)
    c = Tensor(np.full(3, 2.0))
    (x * c).sum().backward()
    assert c.grad is None


def test_leaf_grads_are_writable_and_not_shared():
    """An in-place edit of one .grad (e.g. gradient clipping) must not change
    another tensor's .grad or fail on a read-only view."""
    a = Tensor(np.ones((2, 3)), requires_grad=True)
    b = Tensor(np.ones((2, 3)), requires_grad=True)
    (a + b).sum().backward()
    assert a.grad is not b.grad
    a.grad *= 0.5
    np.testing.assert_array_equal(b.grad, np.ones((2, 3)))
    w = np.ones(3)
    x = Tensor(np.zeros(3), requires_grad=True)
    (x + 0.0).backward(w)
    x.grad += 1.0
    np.testing.assert_array_equal(w, np.ones(3))           # the caller's array is untouched


@pytest.mark.parametrize("data", [
    np.array([1, 2, 3]), np.array([True, False]), np.array([1, "a"], dtype=object), [1, 2], 3,
    np.array([1 + 1j])])
def test_non_float_data_is_refused(data):
    with pytest.raises(TypeError, match="float"):
        Tensor(data)


def test_non_float_dtype_is_refused():
    with pytest.raises(TypeError):
        Tensor([1.0, 2.0], dtype="int64")


def test_explicit_dtype_converts():
    t = Tensor([1, 2], dtype="float32")
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.data, [1, 2])


@pytest.mark.parametrize("op", [
    lambda x: x + 1, lambda x: 1 + x, lambda x: x - 2.5, lambda x: 2.5 - x, lambda x: x * 3,
    lambda x: 3.0 * x, lambda x: x / 7, lambda x: 7.0 / x, lambda x: x ** 2, lambda x: x ** 0.5,
    lambda x: -x, lambda x: x.mean(), lambda x: x.sum(axis=0), lambda x: x.max(axis=1),
    lambda x: x.clip(0.1, 0.9), lambda x: x.sigmoid(), lambda x: x.softplus(),
    lambda x: x.log_sigmoid(), lambda x: x.relu(), lambda x: x.tanh(), lambda x: x.exp(),
    lambda x: x.log(), lambda x: x.maxout(2), lambda x: x @ np.ones((4, 2), np.float32),
    lambda x: x[np.float64(1).astype(int)], lambda x: x + np.float64(1.5)])
def test_float32_stays_float32(op):
    x = Tensor(np.random.default_rng(0).uniform(0.5, 1.5, (3, 4)).astype(np.float32),
               requires_grad=True)
    y = op(x)
    assert y.dtype == np.float32
    y.backward(np.ones(y.shape, np.float32))
    assert x.grad.dtype == np.float32


def test_float32_grad_from_float64_upstream_is_float32():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    (x * 2).backward(np.ones(3, np.float64))
    assert x.grad.dtype == np.float32


def test_matmul_shape_mismatch_names_both_shapes():
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match=r"\(3,\)"):
        a @ Tensor(np.ones(3))


def test_pow_gradients_at_zero():
    x = Tensor(np.array([0.0, 2.0]), requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])
    x.grad = None
    (x ** 2 + x ** 1).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 5.0])


def test_pow_refuses_a_tensor_exponent():
    with pytest.raises(TypeError):
        Tensor(np.ones(2)) ** Tensor(np.ones(2))


def test_index_with_a_tensor_is_refused():
    with pytest.raises(TypeError):
        Tensor(np.ones(3))[Tensor(np.zeros(1))]


def test_ndarray_on_the_left_gives_a_tensor():
    x = Tensor(np.ones(3), requires_grad=True)
    y = np.full(3, 2.0) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [2, 2, 2])


def test_bookkeeping():
    t = npgan.tensor(np.zeros((2, 5)), requires_grad=True)
    assert t.shape == (2, 5) and t.ndim == 2 and t.size == 10 and len(t) == 2
    assert "requires_grad=True" in repr(t)
    assert "op=mul" in repr(t * 2.0)
    assert t.numpy() is t.data
    assert Tensor(np.array([4.0])).item() == 4.0
    assert Tensor(t).data is t.data


def test_mean_over_an_axis_out_of_range_is_a_value_error():
    with pytest.raises(ValueError, match="axis 5 is out of bounds"):
        Tensor(np.zeros((1, 1))).mean(axis=5)
    with pytest.raises(ValueError, match="axis -3"):
        Tensor(np.zeros((1, 1))).mean(axis=(0, -3))


def test_max_of_a_slice_with_nan_sends_the_gradient_to_the_nan():
    import warnings
    x = Tensor(np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]]), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # no 0/0 warning
        y = x.max(axis=1)
        y.backward(np.array([2.0, 3.0]))
    assert np.isnan(y.data[0]) and y.data[1] == 6.0
    np.testing.assert_array_equal(x.grad, [[0, 2, 0], [0, 0, 3]])
