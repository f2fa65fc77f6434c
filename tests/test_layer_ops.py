"""The layer ops (npgan._kernels.layer_ops over layers.pyx and update.pyx:
linear, maxout, dropout, SGD, gradient sums) equal their references in
npgan/_kernels/reference.py, and the ops built on them (F.linear,
Tensor.maxout, F.dropout, optim.SGD) keep their gradients exact on whichever
path is active.

Tolerances we promise, compiled vs reference: float64 1e-12 relative (GEMMs
sum in a different order than NumPy's matmul), float32 2e-5 relative + 2e-6
absolute for anything with a GEMM in it; maxout, dropout and the SGD update do
no reordered arithmetic and are equal bit for bit.

Tests that compare with a compiled module take its fixture (``layers_kernel``, ...)
(conftest.py; skipped with NPGAN_NO_KERNELS=1 or when the extension is not built); the rest
runs on the active path, so both CI runs check them.
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from npgan import Tensor, functional as F, nn, optim, settings
from npgan import _kernels as K
from npgan._kernels import reference as ref
from npgan.gradcheck import gradcheck

from conftest import away_from_zero

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def rand(*shape, dtype=np.float64, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)
ACTS = [None, "relu", "sigmoid"]


def ref_linear(x, w, b=None, activation=None):
    """The reference linear layer with its activation -> (y, saved), as
    _kernels.linear_forward: saved is y for relu, the pre-activation for sigmoid."""
    z = ref.linear_forward(x, w, b)
    if activation is None:
        return z, None
    if activation == "relu":
        y = ref.relu_forward(z)
        return y, y
    return ref.sigmoid_forward(z), z


def ref_linear_backward(g, x, w, saved, activation=None, *need):
    if activation == "relu":
        g = ref.relu_backward(g, saved)
    elif activation == "sigmoid":
        g = ref.sigmoid_backward(g, saved)
    return ref.linear_backward(g, x, w, *need)


def close(actual, desired, dtype, what=""):
    assert actual.dtype == dtype, what
    assert actual.shape == desired.shape, what
    np.testing.assert_allclose(actual, desired, err_msg=what, **TOL[dtype])


# odd shapes (N, in, out): 1s, primes, in = 0 (the output is the bias), and the
# paper's first G layer at batch 3
SHAPES = [(1, 1, 1), (7, 13, 5), (3, 0, 4), (2, 5, 1), (5, 100, 37)]


def _linear_case(n, i, o, dtype, seed=0):
    x = rand(n, i, dtype=dtype, seed=seed, scale=2.0)
    w = rand(i, o, dtype=dtype, seed=seed + 1, scale=0.5)
    b = rand(o, dtype=dtype, seed=seed + 2)
    return x, w, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_linear_forward_equals_reference(layers_kernel, act, dtype):
    for n, i, o in SHAPES:
        x, w, b = _linear_case(n, i, o, dtype)
        for bias in (b, None):
            y, saved = K.linear_forward(x, w, bias, act)
            ry, rsaved = ref_linear(x, w, bias, act)
            close(y, ry, dtype, f"{act} {n, i, o} y")
            if act is None:
                assert saved is None
            else:
                close(saved, rsaved, dtype, f"{act} {n, i, o} saved")
            if act == "relu":
                assert saved is y


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_forward_views_copied_or_taken_by_layout(layers_kernel, dtype):
    x, w, b = _linear_case(6, 9, 4, dtype)
    big = rand(12, 18, dtype=dtype, seed=5)
    want = ref_linear(big[::2, ::2], w, b, "relu")[0]
    for xv in (big[::2, ::2], np.asfortranarray(big[::2, ::2])):      # strided: copied; F: as is
        close(K.linear_forward(xv, w, b, "relu")[0], want, dtype)
    wt = np.ascontiguousarray(w.T).T                                    # F-contiguous weight
    close(K.linear_forward(x, wt, b)[0], ref_linear(x, w, b)[0], dtype)
    wbig = rand(9, 8, dtype=dtype, seed=6)
    close(K.linear_forward(x, wbig[:, ::2], b[::-1])[0],
          ref_linear(x, wbig[:, ::2].copy(), b[::-1].copy())[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_without_a_backward_keeps_nothing(dtype):
    """keep=False (F.linear under no_grad): same output, no pre-activation stored."""
    x, w, b = _linear_case(5, 7, 3, dtype)
    y, saved = K.linear_forward(x, w, b, "sigmoid", keep=False)
    assert saved is None
    close(y, ref_linear(x, w, b, "sigmoid")[0], dtype)
    from npgan import no_grad
    with no_grad():
        out = F.linear(x, w, b, activation="sigmoid")
    np.testing.assert_array_equal(out.data, y)
    assert out._backward is None


def test_linear_sigmoid_saves_the_pre_activation_for_an_exact_backward(layers_kernel):
    x = np.array([[1.0]], np.float32)
    w = np.array([[1.0, 1.0, 1.0, 1.0]], np.float32)
    b = np.array([-1.0, 29.0, -61.0, 59.0], np.float32)           # pre = 0, 30, -60, 60
    y, pre = K.linear_forward(x, w, b, "sigmoid")
    np.testing.assert_array_equal(pre, [[0, 30, -60, 60]])
    g = np.ones_like(y)
    gx, gw, gb = K.linear_backward(g, x, w, pre, "sigmoid")
    want = np.exp(-np.abs(pre.astype(np.float64))) / (1 + np.exp(-np.abs(pre.astype(np.float64)))) ** 2
    np.testing.assert_allclose(gb, want[0], rtol=1e-6)            # 9.4e-14 at 30, not 0 from y(1-y)
    assert gb[1] > 0 and gb[3] > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_linear_backward_equals_reference(layers_kernel, act, dtype):
    for n, i, o in SHAPES:
        x, w, b = _linear_case(n, i, o, dtype)
        _, saved = ref_linear(x, w, b, act)
        g = rand(o, n, dtype=dtype, seed=9).T                          # a transposed view
        for need in [(True, True, True), (True, False, False), (False, True, True),
                     (False, False, True), (False, False, False)]:
            got = K.linear_backward(g, x, w, saved, act, *need)
            want = ref_linear_backward(g, x, w, saved, act, *need)
            for name, a, r, nd in zip(("gx", "gw", "gb"), got, want, need):
                if not nd:
                    assert a is None, f"{name} computed though not needed"
                else:
                    close(a, r, dtype, f"{act} {n, i, o} {name}")


@pytest.mark.parametrize("act", ACTS)
def test_big_bias_act_and_act_backward_run_in_bands_with_the_same_bits(layers_kernel, pool_kernel, act):
    """float32 passes of >= 2**15 elements are cut into column bands on the
    pool's threads: the same bits as one pass (split off), bias sums included,
    and the reference's up to the sigmoid's rounding."""
    code = {None: 0, "relu": 1, "sigmoid": 2}[act]
    z, b, g = (rand(100, 1201, dtype=np.float32), rand(1201, dtype=np.float32, seed=1),
               rand(100, 1201, dtype=np.float32, seed=2))
    outs = []
    for split in (True, False):
        prev = pool_kernel.set_split(split)
        try:
            y, pre = z.copy(), np.empty_like(z)
            layers_kernel.bias_act(y, b, code, pre if act == "sigmoid" else None)
            saved = y if act == "relu" else pre
            gpre, gb = np.empty_like(g), np.empty(1201, np.float32)
            layers_kernel.act_backward(g, saved if act else None, code, gpre if act else None, gb)
            outs.append((y, gpre if act else g, gb))
        finally:
            pool_kernel.set_split(*prev)
    for banded, whole in zip(*outs):
        np.testing.assert_array_equal(banded, whole)
    if act == "relu":
        np.testing.assert_array_equal(outs[0][0], np.maximum(z + b, 0))
        np.testing.assert_array_equal(outs[0][2], np.where(z + b > 0, g, 0).sum(axis=0))
    elif act is None:
        np.testing.assert_array_equal(outs[0][0], z + b)
        np.testing.assert_array_equal(outs[0][2], g.sum(axis=0))
    else:
        np.testing.assert_allclose(outs[0][0], ref.sigmoid_forward(z + b), rtol=1e-6, atol=1e-7)


def test_linear_refuses_bad_shapes_and_activations():
    x, w, b = _linear_case(3, 4, 2, np.float64)
    with pytest.raises(ValueError, match="activation"):
        K.linear_forward(x, w, b, "tanh")
    with pytest.raises(ValueError, match="need x"):
        K.linear_forward(x, w.T, b)
    with pytest.raises(ValueError, match="need x"):
        K.linear_forward(x, w, b[:1])
    with pytest.raises(ValueError, match="activation"):
        F.linear(x, w, b, activation="softmax")


@pytest.mark.parametrize("act", ACTS)
def test_linear_gradcheck(act):
    x, w, b = _linear_case(4, 5, 3, np.float64)
    if act == "relu":     # keep pre-activations off the kink
        b = b + 10 * np.sign(b)
    assert gradcheck(lambda x, w, b: F.linear(x, w, b, activation=act), x, w, b)
    assert gradcheck(lambda x, w: F.linear(x, w, activation=act), x, w)


def test_linear_is_one_op_and_computes_only_needed_gradients(monkeypatch):
    x, w, b = _linear_case(4, 5, 3, np.float32)
    xt, wt, bt = Tensor(x), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
    calls = []
    real = K.linear_backward
    monkeypatch.setattr(K, "linear_backward", lambda *a: calls.append(a[5:]) or real(*a))
    y = F.linear(xt, wt, bt, activation="relu")
    assert y._op == "linear" and y._parents == (xt, wt, bt)
    y.sum().backward()
    assert calls == [(False, True, True)]                     # no gradient for x
    assert xt.grad is None and wt.grad.dtype == np.float32 and bt.grad.shape == (3,)
    wt.requires_grad = False                                  # frozen after the forward
    bt.grad = None
    y.sum().backward()
    assert calls[-1] == (False, False, True)


def test_linear_general_route_keeps_old_semantics():
    """x not 2-D, mixed dtypes, broadcasting bias: plain x @ w + b ops."""
    x, w, b = _linear_case(3, 4, 2, np.float64)
    y = F.linear(x.astype(np.float32), w, b)                  # float32 @ float64 -> float64
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.data, x.astype(np.float32) @ w + b)
    y = F.linear(x, w, 1.5, activation="sigmoid")
    np.testing.assert_allclose(y.data, 1 / (1 + np.exp(-(x @ w + 1.5))))
    assert gradcheck(lambda x, w, b: F.linear(x, w, b), x, w, b[None, :])


def test_linear_empty_batch_gives_empty_output():
    x, w, b = _linear_case(0, 4, 2, np.float32)
    xt = Tensor(x, requires_grad=True)
    wt, bt = Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
    y = F.linear(xt, wt, bt, activation="relu")
    assert y.shape == (0, 2) and y.dtype == np.float32
    y.sum().backward()
    assert xt.grad.shape == (0, 4)
    np.testing.assert_array_equal(wt.grad, 0)
    np.testing.assert_array_equal(bt.grad, 0)


def test_compiled_linear_kernels_refuse_empty_batches(layers_kernel):
    e = np.empty((0, 3), np.float32)
    with pytest.raises(ValueError, match="empty batch"):
        layers_kernel.bias_act(e, np.zeros(3, np.float32), 1, None)
    with pytest.raises(ValueError, match="empty batch"):
        layers_kernel.act_backward(e, e, 1, e, None)


# ----------------------------------------------------------------------------- maxout

def _maxout_inputs(dtype):
    rng = np.random.default_rng(3)
    ties = rng.integers(0, 3, (6, 20)).astype(dtype)                 # many ties: the first wins
    nan = rand(4, 15, dtype=dtype)
    nan[0, 1] = nan[1, 4] = nan[2, 3] = nan[2, 5] = np.nan           # first NaN wins, as argmax
    big = rand(10, 42, dtype=dtype, seed=4)
    return [("(7,12) p3", rand(7, 12, dtype=dtype), 3),
            ("(1,5) p5", rand(1, 5, dtype=dtype), 5),
            ("(9,8) p1", rand(9, 8, dtype=dtype), 1),
            ("(2,3,35) p7", rand(2, 3, 35, dtype=dtype), 7),
            ("(13,) p13", rand(13, dtype=dtype), 13),
            ("ties p4", ties, 4), ("nan p5", nan, 5), ("inf p3", np.full((2, 6), -np.inf, dtype), 3),
            ("strided p2", big[::3, ::3], 2), ("transposed p5", big.T[:, :5].T.T, 5),
            ("fortran p6", np.asfortranarray(big), 6)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxout_equals_reference_bit_for_bit(maxout_kernel, dtype):
    for label, x, pieces in _maxout_inputs(dtype):
        keep = x.copy()
        y, arg = K.maxout_forward(x, pieces)
        ry, rarg = ref.maxout_forward(x, pieces)
        assert arg.dtype == np.uint8, label
        assert y.dtype == dtype and y.shape == ry.shape, label
        np.testing.assert_array_equal(y, ry, err_msg=label)
        np.testing.assert_array_equal(arg, rarg, err_msg=label)
        g = rand(*y.shape[::-1], dtype=dtype, seed=8).T                # a view
        gx = K.maxout_backward(g, arg, pieces)
        np.testing.assert_array_equal(gx, ref.maxout_backward(g, rarg, pieces), err_msg=label)
        assert gx.dtype == dtype
        np.testing.assert_array_equal(x, keep, err_msg=f"{label}: input modified")


def test_big_maxout_and_dropout_run_in_bands_with_the_same_bits(maxout_kernel, dropout_kernel):
    """float32 passes of 2**15 elements or more are cut into bands on the pool:
    the same bits as the reference, a NaN in the last band included."""
    x = rand(100, 1200, dtype=np.float32)
    x[97, 3] = np.nan                                   # in the last band: its flag must count
    x[98, 10:15] = np.inf
    y, arg = K.maxout_forward(x, 5)
    ry, rarg = ref.maxout_forward(x, 5)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(arg, rarg)
    g = rand(100, 240, dtype=np.float32, seed=1)
    np.testing.assert_array_equal(K.maxout_backward(g, arg, 5), ref.maxout_backward(g, rarg, 5))
    h = rand(100, 784, dtype=np.float32, seed=2)
    rng = np.random.default_rng(3)
    u = rng.random(h.shape, dtype=np.float32)
    w = rng.integers(0, 2**32, h.shape, dtype=np.uint32)
    for p in (0.2, 0.5):
        np.testing.assert_array_equal(K.dropout_forward(h, u, p), ref.dropout_forward(h, u, p))
        np.testing.assert_array_equal(K.dropout_forward(h, w, p), ref.dropout_forward(h, w, p))


def test_maxout_many_pieces_and_empty_take_the_reference():
    x = rand(2, 600)
    y, arg = K.maxout_forward(x, 300)                                 # > 256 pieces: int64 arg
    np.testing.assert_array_equal(y, x.reshape(2, 2, 300).max(-1))
    assert K.maxout_backward(np.ones_like(y), arg, 300).sum() == 4
    y, arg = K.maxout_forward(np.empty((0, 6), np.float32), 2)
    assert y.shape == (0, 3) and K.maxout_backward(y, arg, 2).shape == (0, 6)
    with pytest.raises(ValueError, match="multiple of pieces"):
        K.maxout_forward(x, 7)


def test_compiled_maxout_refuses_empty_and_mismatched(maxout_kernel):
    e = np.empty(0)
    with pytest.raises(ValueError, match="empty batch"):
        maxout_kernel.maxout_forward(e, 2, e, np.empty(0, np.uint8))
    with pytest.raises(ValueError, match="empty batch"):
        maxout_kernel.maxout_backward(e, np.empty(0, np.uint8), 2, e)
    with pytest.raises(ValueError, match="sizes"):
        maxout_kernel.maxout_forward(np.zeros(6), 4, np.zeros(2), np.zeros(2, np.uint8))


def test_maxout_gradcheck():
    x = away_from_zero(rand(5, 12)) * np.arange(1, 13)               # distinct, no near-ties
    assert gradcheck(lambda t: F.maxout(t, 3), x)
    layer = nn.Maxout(6, units=4, pieces=3, init="normal", std=1.0, rng=np.random.default_rng(0)).to(
        "float64")
    xin = rand(5, 6, seed=1)

    def fn(x, w, b):
        return F.maxout(F.linear(x, w, b), 3)
    assert gradcheck(fn, xin, layer.linear.weight.data, layer.linear.bias.data)


# ----------------------------------------------------------------------------- dropout

def _old_dropout(x, u, p):
    """The masks npgan drew before the kernel: (u < keep) * (1/keep), cast to x's dtype."""
    keep = 1.0 - p
    return x * ((u < keep) * (1.0 / keep)).astype(x.dtype)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")     # inf * 0 in the references
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.5, 0.2, 0.3, 0.0, 0.999])
def test_dropout_equals_reference_and_the_old_masks(dropout_kernel, dtype, p):
    rng = np.random.default_rng(0)
    big = rand(30, 22, dtype=dtype)
    big.flat[:3] = (np.nan, np.inf, -np.inf)
    for x in (big, big[::2, ::3], big.T, rand(7, dtype=dtype)):
        u = rng.random(x.shape, dtype=np.float32)
        u.flat[:2] = np.float32(1 - p)                                 # on the threshold: dropped
        y = K.dropout_forward(x, u, p)
        np.testing.assert_array_equal(y, ref.dropout_forward(x, u, p))
        np.testing.assert_array_equal(y, _old_dropout(x, u, p))
        g = rand(*x.shape, dtype=dtype, seed=1)
        np.testing.assert_array_equal(K.dropout_backward(g, u, p), ref.dropout_backward(g, u, p))
        assert y.dtype == dtype


def test_dropout_keeps_the_random_stream():
    """Same Generator, same masks as before the kernel (and on either path)."""
    x = np.ones((40, 30), np.float32)
    y = F.dropout(x, 0.2, rng=np.random.default_rng(4)).data
    u = np.random.default_rng(4).random(x.shape, dtype="float32")
    np.testing.assert_array_equal(y, _old_dropout(x, u, 0.2))


@pytest.mark.parametrize("bitgen", [np.random.PCG64, np.random.PCG64DXSM])
def test_uniform_draws_are_the_words_of_numpys_float32_draws(bitgen):
    """The words uniform_draws returns make rng.random's float32 draws bit for
    bit, and leave the generator where rng.random does (its later draws equal)."""
    fast, slow = np.random.Generator(bitgen(7)), np.random.Generator(bitgen(7))
    for shape in [(100, 784), (6, 5), (2,)]:
        w = K.uniform_draws(fast, shape)
        assert w.dtype == np.uint32 and w.shape == shape
        u = slow.random(shape, dtype=np.float32)
        np.testing.assert_array_equal((w >> 8).astype(np.float32) * np.float32(2.0 ** -24), u)
    np.testing.assert_array_equal(fast.random(9), slow.random(9))
    np.testing.assert_array_equal(fast.integers(0, 2**32, 5), slow.integers(0, 2**32, 5))


def test_uniform_draws_fall_back_to_the_float_draws():
    """An odd count, a buffered half word, another bit generator: rng.random."""
    for make, shape in [(lambda: np.random.default_rng(3), (3, 5)),
                        (lambda: np.random.Generator(np.random.MT19937(3)), (4, 4)),
                        (lambda: np.random.Generator(np.random.Philox(3)), (4, 4))]:
        a, b = make(), make()
        u = K.uniform_draws(a, shape)
        assert u.dtype == np.float32
        np.testing.assert_array_equal(u, b.random(shape, dtype=np.float32))
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    a.random(3, dtype=np.float32), b.random(3, dtype=np.float32)    # leaves half a word
    u = K.uniform_draws(a, (4, 2))
    assert u.dtype == np.float32
    np.testing.assert_array_equal(u, b.random((4, 2), dtype=np.float32))


@pytest.mark.parametrize("p", [0.5, 0.2, 0.3, 0.0, 0.999, 1 - 2.0 ** -24])
def test_dropout_from_words_is_dropout_from_the_draws(p):
    """Words whose draws sit just below, on and above the threshold, then
    random ones: the word test (w >> 8) < T keeps exactly the draws u < keep,
    on the active path (compiled or reference) and in the reference."""
    keep_t = math.ceil(ref.dropout_keep(p) * 2.0 ** 24)      # (w >> 8) below it: draw < keep
    near = np.array([keep_t - 2, keep_t - 1, keep_t, keep_t + 1], np.int64).clip(0, 2**24 - 1)
    w = np.concatenate([(near << 8).astype(np.uint32), (near << 8 | 0xff).astype(np.uint32),
                        np.random.default_rng(0).integers(0, 2**32, 992, dtype=np.uint32)])
    u = (w >> 8).astype(np.float32) * np.float32(2.0 ** -24)
    for dtype in DTYPES:
        x = rand(w.size, dtype=dtype)
        want = ref.dropout_forward(x, u, p)
        np.testing.assert_array_equal(K.dropout_forward(x, w, p), want)
        np.testing.assert_array_equal(ref.dropout_forward(x, w, p), want)
        np.testing.assert_array_equal(K.dropout_backward(x, w, p), ref.dropout_backward(x, u, p))
    with pytest.raises(TypeError, match="float32"):
        K.dropout_forward(x, w.astype(np.int64), p)


def test_dropout_refuses_mismatched_draws_and_bad_p():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="draws"):
        K.dropout_forward(x, np.ones((4, 3), np.float32), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        K.dropout_forward(x, np.ones((3, 4), np.float32), 1.0)
    assert K.dropout_forward(np.ones((0, 4)), np.ones((0, 4), np.float32), 0.5).shape == (0, 4)


def test_compiled_dropout_refuses_empty(dropout_kernel):
    with pytest.raises(ValueError, match="empty batch"):
        dropout_kernel.dropout(np.empty(0), np.empty(0, np.float32), 0.5, 2.0, np.empty(0))


def test_dropout_gradcheck_and_grad_equals_mask():
    assert gradcheck(lambda x: F.dropout(x, 0.3, rng=np.random.default_rng(2)), rand(6, 7))
    t = Tensor(np.ones((20, 10), np.float32), requires_grad=True)
    y = F.dropout(t, 0.5, rng=np.random.default_rng(1))
    assert y._op == "dropout"
    y.sum().backward()
    np.testing.assert_array_equal(t.grad, y.data)


# ----------------------------------------------------------------------------- SGD update

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_equals_reference_bit_for_bit(update_kernel, dtype, nesterov):
    p0, v0, g = rand(37, 11, dtype=dtype), rand(37, 11, dtype=dtype, seed=1), rand(37, 11, dtype=dtype, seed=2)
    p1, v1, p2, v2 = p0.copy(), v0.copy(), p0.copy(), v0.copy()
    for lr, mu in [(0.1, 0.5), (0.0123, 0.7), (1e-6, 0.0)]:
        K.sgd_momentum_(p1, v1, g, lr, mu, nesterov)
        ref.sgd_momentum_(p2, v2, g, lr, mu, nesterov)
        np.testing.assert_array_equal(v1, v2)
        np.testing.assert_array_equal(p1, p2)
    K.sgd_momentum_(p1, v1, g.T.copy().T, 0.1, 0.5, nesterov)         # F-ordered gradient: copied
    ref.sgd_momentum_(p2, v2, g, 0.1, 0.5, nesterov)
    np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_momentum_split_over_threads_is_bit_for_bit(update_kernel, dtype):
    """Arrays of >= 2**16 elements are updated in bands on the pool's threads
    (sizes not a multiple of the bands, too): the same bits as the reference."""
    for n in (1 << 16, 1_000_003):
        p0, v0, g = rand(n, dtype=dtype), rand(n, dtype=dtype, seed=1), rand(n, dtype=dtype, seed=2)
        p1, v1, p2, v2 = p0.copy(), v0.copy(), p0.copy(), v0.copy()
        K.sgd_momentum_(p1, v1, g, 0.1, 0.5)
        ref.sgd_momentum_(p2, v2, g, 0.1, 0.5)
        np.testing.assert_array_equal(v1, v2)
        np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_accumulation_add_is_a_plus_b_bit_for_bit(dtype):
    """K.add (banded on the pool for big arrays, on the compiled path) is
    a + b exactly, NaN and inf included; small, mismatched or strided
    operands take a + b itself; a leaf used twice collects the sum."""
    a, b = rand(300, 700, dtype=dtype), rand(300, 700, dtype=dtype, seed=1)
    a.flat[:3] = (np.nan, np.inf, -np.inf)
    b.flat[3:6] = (np.inf, -np.inf, 1e30)
    got = K.add(a, b)
    assert got.dtype == dtype and got is not a and got is not b
    np.testing.assert_array_equal(got, a + b)
    for x, y in [(a[:5], b[:5]), (a[:, ::2], b[:, ::2]), (a, (b / 1e30).astype(np.float16))]:
        np.testing.assert_array_equal(K.add(x, y), x + y)
    w = Tensor(rand(400, 300, dtype=dtype, seed=2), requires_grad=True)
    u, v = rand(400, 300, dtype=dtype, seed=3), rand(400, 300, dtype=dtype, seed=4)
    ((w * Tensor(u)).sum() + (w * Tensor(v)).sum()).backward()
    np.testing.assert_array_equal(w.grad, u + v)


def test_sgd_step_matches_the_written_rule():
    """optim.SGD through the dispatch: v <- mu v - lr g; p <- p + v (float32)."""
    w = nn.Parameter(rand(5, 3, dtype=np.float32))
    opt = optim.SGD([w], lr=0.1, momentum=0.5)
    p, v = w.data.copy(), np.zeros_like(w.data)
    for step in range(3):
        w.grad = rand(5, 3, dtype=np.float32, seed=step)
        opt.step()
        v = v * np.float32(0.5) - np.float32(0.1) * w.grad
        p = p + v
        np.testing.assert_array_equal(w.data, p)


# ----------------------------------------------------------------------------- fallbacks

def test_without_the_extension_everything_takes_the_reference(monkeypatch):
    """load() -> None (extension not built, or SciPy missing): same results."""
    x, w, b = _linear_case(5, 6, 4, np.float32)
    want = F.linear(x, w, b, activation="relu").data
    monkeypatch.setattr(K._loader, "_cache", dict.fromkeys(K.available(), None))   # none loads
    np.testing.assert_allclose(F.linear(x, w, b, activation="relu").data, want, **TOL[np.float32])
    y, arg = K.maxout_forward(rand(3, 6), 3)
    assert arg.dtype == np.int64


def test_package_works_without_scipy():
    """A fresh interpreter where `import scipy` fails: the gemm module does not
    load, the paper's G and D still train (reference path for the products)."""
    code = (
        "import sys; sys.modules['scipy'] = None\n"
        "import numpy as np\n"
        "from npgan import _kernels as K, models, optim, functional as F\n"
        "assert K.load('gemm') is None\n"
        "g, d = models.Generator(z_dim=4, hidden=6, out=5), models.Discriminator(inp=5, units=3, pieces=2)\n"
        "z = np.random.default_rng(0).random((3, 4), dtype=np.float32)\n"
        "loss = F.binary_cross_entropy_with_logits(d(g(z)), 1)\n"
        "loss.backward()\n"
        "optim.SGD(g.parameters(), lr=0.1, momentum=0.5).step()\n"
        "print('ok')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_no_kernels_switch_takes_the_reference(monkeypatch):
    calls = []
    real = ref.linear_forward
    monkeypatch.setattr(ref, "linear_forward", lambda *a: calls.append(1) or real(*a))
    with settings.override(kernels=False):
        F.linear(rand(2, 3), rand(3, 4))
    assert calls


# ----------------------------------------------------------------------------- fork

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_finds_every_nan_and_inf(update_kernel, dtype):
    # bands on the pool: a bad value in any band, at either end, is found
    n = 3 * (1 << 16) + 7
    a = np.random.default_rng(0).uniform(-1, 1, n).astype(dtype)
    a[::1000] = np.finfo(dtype).max                   # the largest finite values are finite
    assert update_kernel.all_finite(a) and K.all_finite(a)
    for i in (0, 1 << 16, n // 2, n - 1):
        for bad in (np.nan, np.inf, -np.inf):
            b = a.copy()
            b[i] = bad
            assert not update_kernel.all_finite(b), (i, bad)
            assert not K.all_finite(b.reshape(-1, 1)), (i, bad)
    assert update_kernel.all_finite(a[:0])
    assert not K.all_finite(np.array([1.0, np.nan], dtype))           # small: the array module