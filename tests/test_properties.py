"""Property-based tests (Hypothesis) of the engine: random shapes, broadcasts,
axes, indices, memory layouts and dtypes, for every op of ``npgan.Tensor`` and
the functional layer.

Three kinds of property:

1. forward = a plain NumPy expression. Where the engine calls the same NumPy
   function the result must be identical; where it computes differently
   (a stable formula, a fused kernel) the difference is bounded by what
   rounding allows (below).
2. backward = central finite differences in float64 (``npgan.gradcheck``),
   with tolerances from the error of the difference quotient (``fd_tol``).
3. compiled kernels = their references (``npgan/_kernels/reference.py``) on
   C, F, transposed, strided and reversed arrays of float32 and float64, to
   rounding bounds that scale with the sums involved. These take the
   ``activations_kernel`` / ``layers_kernel`` / ``gemm_kernel`` / ... fixtures: skipped with
   ``NPGAN_NO_KERNELS=1`` (the other two kinds then run on the reference path).

Rounding model. ``u = eps/2`` is the unit roundoff of the dtype. One
arithmetic operation is exact to ``u`` relative; NumPy's and libm's ``exp``,
``log``, ``log1p``, ``tanh`` to at most 4 ulp (``4 eps``; NumPy's own SIMD
float32 versions are validated to < 4 ulp, glibc to 1-2). A sum or dot
product of K terms computed in any order (pairwise, blocked, with or without
FMA: whatever BLAS and the CPU choose) is within ``K u sum|terms|`` of the
exact value (Higham, Accuracy and Stability, (3.4)), so two such results differ
by at most twice that. Nothing below is a constant fitted to one CPU.

Finite differences, step h (gradcheck's 1e-6), loss f = sum(w * out):
|numeric - exact| <= h^2/6 max|f'''| (truncation) + e_f/h (rounding of the two
evaluations, e_f bounding the absolute error of one) + |f'| u |x|/h (x +- h is
rounded). With |w| ~ 1 and inputs of order 1, e_f/h ~ 1e-10: the
float64 checks are three orders tighter than gradcheck's defaults.
"""
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from npgan import Tensor, concatenate, functional as F, gradcheck, no_grad  # noqa: E402
from npgan import _kernels as K  # noqa: E402
from npgan._kernels import reference as ref  # noqa: E402
from test_layer_ops import ref_linear, ref_linear_backward  # noqa: E402

H = 1e-6                                   # gradcheck's default step
# |d out_i / d x_j| on the domains drawn here never exceeds this (largest:
# exp(3.1) = 22; then |a|/b^2 <= 3.5/0.25 = 14, 1.5 x^-2.5 <= 8.5 on [0.5, 3])
D1 = 32.0
U64 = np.finfo(np.float64).eps / 2
EPS = {np.dtype(np.float32): float(np.finfo(np.float32).eps),
       np.dtype(np.float64): float(np.finfo(np.float64).eps)}
TINY = {d: float(np.finfo(d).tiny) for d in EPS}
TRANSCENDENTAL_ULP = 4                     # exp, log, log1p, tanh: <= 4 ulp (see above)

# the compiled-module fixtures are function scoped but only hand out a module
# (or skip): nothing in them is per example
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


# ----------------------------------------------------------------------------- strategies

def floats(lo, hi, width=64):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False,
                     width=width)


def arrays(shape, lo=-3.0, hi=3.0, dtype=np.float64):
    width = 32 if np.dtype(dtype) == np.float32 else 64
    return hnp.arrays(dtype, shape, elements=floats(lo, hi, width)).map(np.asarray)  # 0-d: an array


def away(a, margin=0.1):
    """Values moved at least ``margin`` from 0, sign kept: kinks (relu, clip,
    division, log) stay far outside the finite-difference step."""
    return np.where(a >= 0, 1.0, -1.0) * (margin + np.abs(a))


def distinct(draw, shape, scale=0.25):
    """An array of pairwise distinct values >= scale apart (in [-3, 3]):
    max/maxout are differentiable there and h cannot cross a tie."""
    n = int(np.prod(shape, dtype=np.int64))
    perm = draw(st.permutations(range(n)))
    return (np.array(perm, dtype=np.float64) * scale - (n - 1) * scale / 2).reshape(shape)


DTYPES_ALL = [np.float32, np.float64]
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
PAIRS = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1,
                                          max_side=3)


# ----------------------------------------------------------------------------- tolerances

def projection(out_shape):
    """gradcheck's w: a standard normal draw of seed 0 for a non-scalar output
    (its first draw), ones for a single element."""
    size = int(np.prod(out_shape, dtype=np.int64))
    return np.random.default_rng(0).standard_normal(out_shape) if size > 1 else np.ones(out_shape)


def fd_tol(inputs, out, mag=None, k=0.0, m3=0.0):
    """(atol, rtol) for gradcheck of an op, from the error of a central difference.

    out: the op's float64 forward value; mag: per-element magnitude the
    rounding of out scales with (default |out|) and k: that rounding in eps
    (|fl(out) - out| <= k eps mag); m3: a bound on |third derivative| of one
    output element in one input element on the inputs' domain (0 for ops
    linear in each input element: + - * @, sums, reshapes, indexing, and
    piecewise linear ones away from their kinks).
    """
    out = np.asarray(out, dtype=np.float64)
    w = projection(out.shape)
    mag = np.abs(out) if mag is None else np.broadcast_to(mag, out.shape)
    n = out.size
    eps = 2 * U64
    # e_f: each output's own rounding, plus the projection's sum of n terms,
    # at x +- h, where |out| may be larger than at x by up to h D1
    e_f = (k * eps * np.sum(np.abs(w) * mag) + (n + 1) * U64 * np.sum(np.abs(w * out))
           + (k * eps + (n + 1) * U64) * H * D1 * float(np.sum(np.abs(w))))
    x_max = max([float(np.max(np.abs(x), initial=0.0)) for x in inputs] + [0.0])
    # truncation: x_j reaches at most every output, each through one element
    atol = e_f / H + H * H / 6 * m3 * float(np.sum(np.abs(w)))
    rtol = U64 * (x_max + H) / H            # the step x +- h itself rounded
    # x2: the backward's own rounding (n u |g|, below the others by ~h) and
    # second-order terms; a floor for exactly representable results (atol 0)
    return 2 * atol + 8 * TINY[np.dtype(np.float64)], 2 * rtol + 8 * n * U64


def check_grad(fn, *inputs, mag=None, k=0.0, m3=0.0):
    with no_grad():
        out = fn(*[Tensor(x) for x in inputs]).data
    atol, rtol = fd_tol(inputs, out, mag, k, m3)
    assert gradcheck(fn, *inputs, atol=atol, rtol=rtol)


def assert_within(actual, desired, bound, what=""):
    """|actual - desired| <= bound elementwise, same shape (and both finite)."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, (what, actual.shape, desired.shape)
    assert np.all(np.isfinite(actual)), what
    err = np.abs(actual.astype(np.float64) - desired.astype(np.float64))
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), err.shape)
    bad = err > bound
    if np.any(bad):
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{what}: |{actual[i]!r} - {desired[i]!r}| = {err[i]:.3e} > bound "
                             f"{bound[i]:.3e} at {i} ({int(bad.sum())} of {bad.size})")


def assert_same(actual, desired, what=""):
    actual = np.asarray(actual)
    assert actual.dtype == np.asarray(desired).dtype, (what, actual.dtype, np.asarray(desired).dtype)
    np.testing.assert_array_equal(actual, desired, err_msg=what, strict=True)


# ----------------------------------------------------------------------------- memory layouts

LAYOUTS = ("C", "F", "T", "strided", "reversed")


def laid_out(a, kind):
    """The values of ``a`` in another memory layout: C, F (Fortran order),
    T (the transposed view of a C array: F-ordered, not owning its data),
    strided (every other element of each axis of a bigger array whose other
    elements are NaN: a kernel that reads between the strides returns NaN),
    reversed (negative strides)."""
    a = np.asarray(a)
    if a.ndim == 0:
        return a.copy()
    if kind == "C":
        return np.ascontiguousarray(a)
    if kind == "F":
        return np.asfortranarray(a)
    if kind == "T":
        return np.ascontiguousarray(a.T).T
    if kind == "strided":
        big = np.full(tuple(2 * n + 1 for n in a.shape), np.nan, dtype=a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if kind == "reversed":
        rev = tuple(slice(None, None, -1) for _ in a.shape)
        return np.ascontiguousarray(a[rev])[rev]
    raise ValueError(kind)


# ============================================================================= 1. Tensor ops

BINARY = {"+": (lambda a, b: a + b), "-": (lambda a, b: a - b),
          "*": (lambda a, b: a * b), "/": (lambda a, b: a / b)}


@given(st.sampled_from(sorted(BINARY)), PAIRS, st.data())
def test_binary_ops_broadcast_like_numpy_and_their_gradients_are_exact(op, pair, data):
    (sa, sb), _ = pair
    a = data.draw(arrays(sa))
    b = data.draw(arrays(sb))
    if op == "/":
        b = away(b, 0.5)                     # |b| in [0.5, 3.5]: 1/b smooth, bounded
    fn = BINARY[op]
    out = fn(Tensor(a), Tensor(b))
    assert_same(out.data, fn(a, b), op)                  # the engine calls NumPy's op
    # the Tensor on either side, a float or an ndarray on the other: same values
    assert_same(fn(Tensor(a), b).data, fn(a, b), f"Tensor {op} ndarray")
    assert_same(fn(a, Tensor(b)).data, fn(a, b), f"ndarray {op} Tensor")
    s = float(b.reshape(-1)[0])
    assert_same(fn(Tensor(a), s).data, fn(a, np.float64(s)), f"Tensor {op} float")
    # d(a/b)/db = -a/b^2: third derivative in b is -6a/b^4, |a| <= 3, |b| >= 0.5
    check_grad(fn, a, b, m3=6 * 3 / 0.5 ** 4 if op == "/" else 0.0)


@given(st.sampled_from(sorted(BINARY)), PAIRS, st.sampled_from(["sum", "mean", "max", None]),
       st.sampled_from(DTYPES_ALL), st.data())
def test_every_leaf_gradient_has_the_leafs_shape_and_dtype(op, pair, reduce, dtype, data):
    """Whatever broadcasting did, each leaf's .grad has its shape and dtype
    (float32 stays float32: the optimizers' fast path needs one dtype)."""
    (sa, sb), _ = pair
    a = Tensor(data.draw(arrays(sa, dtype=dtype)), requires_grad=True)
    b = Tensor(away(data.draw(arrays(sb, dtype=dtype)), 0.5).astype(dtype), requires_grad=True)
    y = BINARY[op](a, b)
    y = getattr(y, reduce)() if reduce else y
    y.backward(np.ones(y.shape, dtype))
    for leaf in (a, b):
        assert leaf.grad.shape == leaf.shape and leaf.grad.dtype == leaf.dtype, (
            leaf.shape, leaf.dtype, leaf.grad.shape, leaf.grad.dtype)


@settings(max_examples=1)
@given(st.sampled_from(sorted(BINARY)))
def test_a_float32_leafs_gradient_stays_float32_next_to_float64(op):
    a = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    b = Tensor(np.full(3, 2.0), requires_grad=True)
    BINARY[op](a, b).sum().backward()
    assert a.grad.dtype == np.float32, a.grad.dtype


POWERS = [-1.5, -1, 0, 0.5, 1, 2, 3]


@given(st.sampled_from(POWERS), SHAPES, st.data())
def test_pow_forward_and_gradient(p, shape, data):
    x = data.draw(arrays(shape, 0.5, 3.0))
    if float(p).is_integer():
        x = x * data.draw(st.sampled_from([1.0, -1.0]))   # integer powers of negatives too
    y = Tensor(x) ** p
    assert_same(y.data, x ** p, f"x ** {p}")
    # |d3/dx3 x^p| = |p (p-1) (p-2)| |x|^(p-3), |x| in [0.5, 3]
    m3 = abs(p * (p - 1) * (p - 2)) * max(0.5 ** (p - 3), 3.0 ** (p - 3))
    check_grad(lambda t: t ** p, x, m3=m3)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.data())
def test_matmul_is_numpys_and_its_gradient_is_exact(n, k, m, data):
    a, b = data.draw(arrays((n, k))), data.draw(arrays((k, m)))
    assert_same((Tensor(a) @ Tensor(b)).data, a @ b, "@")
    assert_same((a @ Tensor(b)).data, a @ b, "ndarray @ Tensor")
    check_grad(lambda s, t: s @ t, a, b)


def _axes(draw, ndim):
    """None, one axis (maybe negative) or a tuple of distinct axes (maybe negative)."""
    kind = draw(st.sampled_from(["none", "int", "tuple"])) if ndim else "none"
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    axes = draw(hnp.valid_tuple_axes(ndim, min_size=1))        # in [-ndim, ndim)
    return tuple(ax % ndim - (ndim if draw(st.booleans()) else 0) for ax in axes)


@given(st.sampled_from(["sum", "mean", "max"]), SHAPES, st.booleans(), st.data())
def test_reductions_over_any_axes(name, shape, keepdims, data):
    axis = _axes(data.draw, len(shape))
    x = distinct(data.draw, shape) if name == "max" else data.draw(arrays(shape))
    got = getattr(Tensor(x), name)(axis=axis, keepdims=keepdims).data
    want = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    if name == "mean":
        # sum * fl(1/n) vs sum / n: three roundings of the same sum's quotient
        assert_within(got, want, 4 * U64 * np.abs(want), "mean")
    else:
        assert_same(np.asarray(got), np.asarray(want), name)
    check_grad(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), x)


@given(SHAPES, st.booleans(), st.data())
def test_max_shares_the_gradient_among_ties(shape, keepdims, data):
    """With ties (values from {0, 1, 2}) the gradient of max goes to the
    maxima only, in equal shares that sum to the upstream gradient."""
    axis = _axes(data.draw, len(shape))
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0, 2.0])))
    t = Tensor(x, requires_grad=True)
    y = t.max(axis=axis, keepdims=keepdims)
    g = data.draw(arrays(y.shape, 0.5, 2.0))
    y.backward(g)
    m = np.max(x, axis=axis, keepdims=True)
    assert np.all(t.grad[x < m] == 0)
    g_kept = g if keepdims or axis is None else np.expand_dims(g, axis)
    g_kept = np.broadcast_to(g_kept, m.shape) if axis is None else g_kept
    share = np.broadcast_to(g_kept / np.sum(x == m, axis=axis, keepdims=True), x.shape)
    assert_within(t.grad[x == m], share[x == m], 2 * U64 * np.abs(share[x == m]), "tie share")
    total = np.sum(t.grad, axis=axis, keepdims=True)
    n_ties = np.sum(x == m, axis=axis, keepdims=True)
    g_kept = g_kept.reshape(total.shape)
    assert_within(total, g_kept, 2 * n_ties * U64 * np.abs(g_kept), "shares sum to g")


@st.composite
def reshapes(draw):
    """A shape and another of the same size (maybe with one -1)."""
    shape = draw(SHAPES)
    n = int(np.prod(shape, dtype=np.int64))
    factors, rest = [], n
    for f in (2, 3):
        while rest % f == 0:
            factors.append(f)
            rest //= f
    factors = draw(st.permutations(factors))
    new, i = [], 0
    while i < len(factors):
        j = draw(st.integers(i + 1, len(factors)))
        new.append(int(np.prod(factors[i:j])))
        i = j
    new += [1] * draw(st.integers(0, 2))
    new = draw(st.permutations(new)) if new else []
    if new and draw(st.booleans()):
        new[draw(st.integers(0, len(new) - 1))] = -1
    return shape, tuple(new)


@given(reshapes(), st.booleans(), st.data())
def test_reshape(shapes, as_tuple, data):
    shape, new = shapes
    x = data.draw(arrays(shape))
    y = Tensor(x).reshape(new) if as_tuple else Tensor(x).reshape(*new)
    assert_same(y.data, x.reshape(new), f"reshape {shape} -> {new}")
    check_grad(lambda t: t.reshape(new), x)


@given(SHAPES, st.data())
def test_transpose_any_permutation_with_negative_axes(shape, data):
    x = data.draw(arrays(shape))
    nd = len(shape)
    perm = data.draw(st.permutations(range(nd)))
    axes = tuple(a - nd if data.draw(st.booleans()) else a for a in perm)
    how = data.draw(st.sampled_from(["args", "tuple", "none", "T"]))
    call = {"args": lambda t: t.transpose(*axes), "tuple": lambda t: t.transpose(axes),
            "none": lambda t: t.transpose(), "T": lambda t: t.T}[how]
    want = {"args": x.transpose(axes), "tuple": x.transpose(axes), "none": x.transpose(),
            "T": x.T}[how]
    assert_same(call(Tensor(x)).data, want, f"transpose {how} {axes}")
    # a random weight per output position, so a wrong inverse permutation shows
    check_grad(call, x)


@st.composite
def indexed(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    kind = draw(st.sampled_from(["basic", "integer arrays", "boolean"]))
    if kind == "basic":
        idx = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    elif kind == "integer arrays":
        idx = draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(
            min_dims=1, max_dims=2, max_side=4)))
    else:
        idx = draw(hnp.arrays(np.bool_, shape))
    return shape, idx


@given(indexed(), st.data())
def test_indexing_basic_fancy_and_boolean(case, data):
    """Slices (any step), integers, None, ..., integer arrays (repeats
    accumulate) and masks: the values NumPy gives, and their gradient."""
    shape, idx = case
    x = data.draw(arrays(shape))
    want = x[idx]
    assume(want.size > 0)                        # an empty result has no gradient to check
    assert_same(Tensor(x)[idx].data, want, f"x[{idx!r}]")
    check_grad(lambda t: t[idx], x)


@given(st.integers(1, 3), SHAPES, st.data())
def test_concatenate_along_any_axis(count, shape, data):
    assume(len(shape) > 0)
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1))
    xs = []
    for _ in range(count):
        s = list(shape)
        s[axis] = data.draw(st.integers(1, 3))
        xs.append(data.draw(arrays(tuple(s))))
    assert_same(concatenate([Tensor(x) for x in xs], axis=axis).data,
                np.concatenate(xs, axis=axis), f"axis {axis}")
    check_grad(lambda *ts: concatenate(list(ts), axis=axis), *xs)


# elementwise: (Tensor method, NumPy reference, domain, rounding of the engine
# vs the reference in eps (0: the same NumPy call), bound on |f'''| there)
T = TRANSCENDENTAL_ULP
UNARY = {
    "neg": (lambda t: -t, lambda x: -x, "any", 0, 0.0),
    "exp": (Tensor.exp, np.exp, "any", 0, np.exp(3.1)),
    "log": (Tensor.log, np.log, "positive", 0, 2 / 0.5 ** 3),
    "tanh": (Tensor.tanh, np.tanh, "any", 0, 2.0),
    "relu": (Tensor.relu, lambda x: np.maximum(x, 0), "kink", 0, 0.0),
    # engine: where(x>=0, 1, e)/(1+e), e = exp(-|x|), vs 1/(1+exp(-x)): each
    # within T + 3 roundings of the truth
    "sigmoid": (Tensor.sigmoid, lambda x: 1 / (1 + np.exp(-x)), "any", 2 * (T + 2), 0.125),
    # max(x,0) + log1p(exp(-|x|)) (terms of one sign) vs NumPy's logaddexp
    "softplus": (Tensor.softplus, lambda x: np.logaddexp(0, x), "any", 2 * (2 * T + 2), 0.1),
    "log_sigmoid": (Tensor.log_sigmoid, lambda x: -np.logaddexp(0, -x), "any", 2 * (2 * T + 2), 0.1),
}


@given(st.sampled_from(sorted(UNARY)), SHAPES, st.data())
def test_elementwise_ops(name, shape, data):
    method, numpy_fn, domain, k, m3 = UNARY[name]
    x = data.draw(arrays(shape, -3.0, 3.0))
    if domain == "positive":
        x = 0.5 + np.abs(x)
    elif domain == "kink":
        x = away(x)
    got, want = method(Tensor(x)).data, numpy_fn(x)
    if k == 0:
        assert_same(got, want, name)
    else:
        assert_within(got, want, k * 2 * U64 * np.abs(want), name)
    check_grad(method, x, k=k / 2 + T, m3=m3)


@given(st.sampled_from(["sigmoid", "softplus", "log_sigmoid"]),
       st.sampled_from([np.float32, np.float64]), SHAPES, st.data())
def test_stable_activations_at_any_magnitude(name, dtype, shape, data):
    """Logits up to +-1e4 in either dtype: finite values and gradients, equal
    to the float64 closed forms to the dtype's rounding."""
    x = data.draw(arrays(shape, -1e4, 1e4, dtype))
    t = Tensor(x, requires_grad=True)
    y = getattr(t, name)()
    y.backward(np.ones(y.shape, dtype))
    x64 = x.astype(np.float64)
    value = {"sigmoid": lambda v: np.exp(-np.logaddexp(0, -v)),
             "softplus": lambda v: np.logaddexp(0, v),
             "log_sigmoid": lambda v: -np.logaddexp(0, -v)}[name](x64)
    slope = {"sigmoid": np.exp(-np.logaddexp(0, -x64) - np.logaddexp(0, x64)),
             "softplus": np.exp(-np.logaddexp(0, -x64)),
             "log_sigmoid": np.exp(-np.logaddexp(0, x64))}[name]
    eps = EPS[np.dtype(dtype)]
    assert y.dtype == dtype and t.grad.dtype == dtype
    # the dtype's own exp/log1p (<= T ulp each) and a few roundings; a tiny
    # floor where the true value underflows in float32
    k = 2 * T + 4
    assert_within(y.data, value, k * eps * np.abs(value) + TINY[np.dtype(dtype)], name)
    assert_within(t.grad, slope, k * eps * np.abs(slope) + TINY[np.dtype(dtype)], f"{name}'")


@given(SHAPES, st.data())
def test_clip_between_random_bounds(shape, data):
    x = data.draw(arrays(shape))
    lo = data.draw(st.none() | floats(-3, 0))
    hi = data.draw(st.none() | floats(0, 3))
    # no element within 0.01 of a bound: the finite-difference step cannot cross it
    for b in (lo, hi):
        if b is not None:
            x = np.where(np.abs(x - b) < 0.01, b + np.where(x >= b, 0.01, -0.01), x)
    assert_same(Tensor(x).clip(lo, hi).data, np.clip(x, lo, hi), f"clip({lo}, {hi})")
    check_grad(lambda t: t.clip(lo, hi), x)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.data())
def test_maxout_groups_consecutive_features(rows, units, pieces, data):
    x = distinct(data.draw, (rows, units * pieces))
    want = x.reshape(rows, units, pieces).max(axis=-1)
    assert_same(Tensor(x).maxout(pieces).data, want, "maxout")
    assert_same(F.maxout(x, pieces).data, want, "F.maxout")
    check_grad(lambda t: t.maxout(pieces), x)


# ============================================================================= 2. functional

@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4),
       st.sampled_from(K.ACTIVATIONS), st.booleans(), st.data())
def test_linear_is_x_w_plus_b_then_the_activation(n, i, o, act, with_bias, data):
    x, w = data.draw(arrays((n, i))), data.draw(arrays((i, o)))
    b = data.draw(arrays((o,))) if with_bias else None
    z = x @ w + (b if with_bias else 0)
    mag = np.abs(x) @ np.abs(w) + (np.abs(b) if with_bias else 0)
    # compiled or NumPy GEMM: each within (i+1) u mag of the exact z
    dz = 2 * (i + 1) * U64 * mag
    y = F.linear(x, w, b, activation=act).data
    if act is None:
        assert_within(y, z, dz, "linear")
    elif act == "relu":
        assert_within(y, np.maximum(z, 0), dz, "linear relu")
    else:                                # sigmoid: 1/4-Lipschitz, plus its own rounding
        s = 1 / (1 + np.exp(-z))
        assert_within(y, s, dz / 4 + 2 * (T + 2) * 2 * U64 * s, "linear sigmoid")
    if act == "relu":
        # the step moves z by at most h sum|x| or h max|w|: stay clear of the kink
        assume(np.min(np.abs(z)) > 1e-3)
    args = (x, w) if b is None else (x, w, b)
    fn = (lambda s, t: F.linear(s, t, activation=act)) if b is None else \
        (lambda s, t, c: F.linear(s, t, c, activation=act))
    # sigmoid: d3/dz3 <= 1/8, and z is linear in each element with slope <= 3
    check_grad(fn, *args, mag=mag, k=i + 1 + (T if act == "sigmoid" else 0),
               m3=0.125 * 27 if act == "sigmoid" else 0.0)


@given(SHAPES, st.data())
def test_binary_cross_entropy_with_logits(shape, data):
    logits = data.draw(arrays(shape, -20.0, 20.0))
    kind = data.draw(st.sampled_from(["0", "1", "float", "array"]))
    if kind == "array":
        # a shape that broadcasts to the logits': a suffix of theirs, some sides 1
        tshape = tuple(1 if data.draw(st.booleans()) else n
                       for n in shape[len(shape) - data.draw(st.integers(0, len(shape))):])
        targets = data.draw(arrays(tshape, 0.0, 1.0))
    else:
        targets = {"0": 0, "1": 1, "float": data.draw(floats(0, 1))}[kind]
    t = np.broadcast_to(np.asarray(targets, dtype=np.float64), shape)
    terms = t * np.logaddexp(0, -logits) + (1 - t) * np.logaddexp(0, logits)   # all >= 0
    for reduction in ("none", "mean"):
        got = F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction).data
        want = terms if reduction == "none" else np.mean(terms)
        mag = terms if reduction == "none" else np.mean(terms)
        # softplus (2T+2 eps each, vs logaddexp: twice), two products and a sum
        # per element; the mean: a sum of n non-negative terms (n u) and 1/n
        k = 2 * (2 * T + 2) + 3 + (terms.size + 2) / 2 * (reduction == "mean")
        assert_within(got, want, k * 2 * U64 * mag, f"bce {reduction}")
    check_grad(lambda s: F.binary_cross_entropy_with_logits(s, targets, reduction="none"), logits,
               k=2 * T + 3, m3=0.1)


@given(st.integers(1, 4), st.integers(1, 4), st.data())
def test_cross_entropy_and_log_softmax(n, c, data):
    logits = data.draw(arrays((n, c), -10.0, 10.0))
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    shifted = logits - logits.max(axis=1, keepdims=True)
    lsm = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    # exp and log (T each) of a sum of c terms of one sign, and two subtractions
    mag = np.abs(shifted) + np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    assert_within(F.log_softmax(logits, axis=1).data, lsm, (2 * T + c + 2) * 2 * U64 * mag,
                  "log_softmax")
    nll = -lsm[np.arange(n), labels]
    assert_within(F.cross_entropy(logits, labels, reduction="none").data, nll,
                  (2 * T + c + 2) * 2 * U64 * mag[np.arange(n), labels], "cross_entropy")
    check_grad(lambda t: F.log_softmax(t, axis=1), logits, mag=mag, k=2 * T + c + 2, m3=0.1)
    check_grad(lambda t: F.cross_entropy(t, labels), logits, mag=np.mean(mag), k=2 * T + c + n + 2,
               m3=0.1)


@given(SHAPES, st.sampled_from([0.0, 0.2, 0.5, 0.9]), st.integers(0, 2 ** 32 - 1), st.data())
def test_dropout_keeps_or_zeroes_and_scales(shape, p, seed, data):
    """y = x * mask, mask in {0, 1/(1-p)} made from the seed's draws alone
    (the same mask for any x), the gradient g * mask; eval: the identity."""
    x = data.draw(arrays(shape))
    t = Tensor(x, requires_grad=True)
    y = F.dropout(t, p, rng=np.random.default_rng(seed))
    mask = F.dropout(Tensor(np.ones(shape)), p, rng=np.random.default_rng(seed)).data
    assert set(np.unique(mask)) <= {0.0, 1 / (1 - p)}
    if p == 0:
        assert y is t
    assert_same(y.data, x * mask, "dropout forward = x * mask")
    assert F.dropout(t, p, training=False) is t
    if y is not t:
        g = data.draw(arrays(shape))
        y.backward(g)
        assert_same(t.grad, g * mask, "dropout backward = g * mask")


# ============================================================================= 3. compiled vs reference

DTYPES = [np.float32, np.float64]


@st.composite
def matrix(draw, shape, dtype, lo=-3.0, hi=3.0):
    a = draw(arrays(shape, lo, hi, dtype))
    return laid_out(a, draw(st.sampled_from(LAYOUTS)))


ACT_FORWARD = {"relu_forward": 0, "sigmoid_forward": T + 2, "softplus_forward": 2 * T + 2,
               "log_sigmoid_forward": 2 * T + 2}
ACT_BACKWARD = {"relu_backward": 0, "sigmoid_backward": T + 5, "softplus_backward": T + 3,
                "log_sigmoid_backward": T + 3}


@fixture_ok
@given(st.sampled_from(sorted(ACT_FORWARD) + sorted(ACT_BACKWARD)), st.sampled_from(DTYPES),
       hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=5), st.data())
def test_activation_kernels_equal_reference_on_any_layout(activations_kernel, name, dtype, shape,
                                                          data):
    """Each compiled activation and the reference, both within k eps of the
    truth (k from their formulas), so within 2 k eps |ref| of each other;
    relu bit for bit."""
    x = data.draw(matrix(shape, dtype, -30.0, 30.0))
    k = {**ACT_FORWARD, **ACT_BACKWARD}[name]
    if name in ACT_FORWARD:
        got, want = getattr(K, name)(x), getattr(ref, name)(x)
    else:
        g = data.draw(matrix(shape, dtype))
        if name == "relu_backward":
            x = np.maximum(x, 0)                          # it takes y = relu(x)
        got, want = getattr(K, name)(g, x), getattr(ref, name)(g, x)
    assert got.dtype == dtype and got.shape == x.shape
    if k == 0:
        assert_same(got, want, name)
    else:
        assert_within(got, want, 2 * k * EPS[np.dtype(dtype)] * np.abs(want) + TINY[np.dtype(dtype)],
                      name)


@fixture_ok
@given(st.integers(1, 9), st.integers(1, 40), st.integers(1, 9), st.sampled_from(DTYPES),
       st.sampled_from(K.ACTIVATIONS), st.booleans(), st.data())
def test_linear_kernels_equal_reference_on_any_layout(layers_kernel, n, i, o, dtype, act,
                                                      with_bias, data):
    """Compiled linear forward/backward (GEMM by whichever BLAS is chosen) vs
    the NumPy reference, for x and W in every layout: each product of K terms
    within K u sum|terms| of exact, so the two within twice that."""
    x, w = data.draw(matrix((n, i), dtype)), data.draw(matrix((i, o), dtype))
    b = data.draw(arrays((o,), dtype=dtype)) if with_bias else None
    u = EPS[np.dtype(dtype)] / 2
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    mag = np.abs(x64) @ np.abs(w64) + (np.abs(b.astype(np.float64)) if with_bias else 0)
    dz = 2 * (i + 2) * u * mag                            # + bias: one more term
    y, saved = K.linear_forward(x, w, b, act)
    y_ref, saved_ref = ref_linear(x, w, b, act)
    assert y.dtype == dtype and y.shape == (n, o)
    if act == "sigmoid":
        assert_within(saved, saved_ref, dz, "pre-activation")
        bound = dz / 4 + 2 * (T + 2) * 2 * u * np.abs(y_ref.astype(np.float64))
    else:
        bound = dz
    assert_within(y, y_ref, bound + TINY[np.dtype(dtype)], f"linear {act} forward")

    # backward from the same saved values (a relu mask may flip where z ~ 0)
    g = data.draw(matrix((n, o), dtype))
    gx, gw, gb = K.linear_backward(g, x, w, saved_ref, act)
    gx_ref, gw_ref, gb_ref = ref_linear_backward(g, x, w, saved_ref, act)
    gpre = np.abs(_act_grad(g, saved_ref, act)).astype(np.float64)   # |g * act'|
    k_act = 0 if act != "sigmoid" else T + 5               # sigmoid': both within k_act eps
    rel = 2 * k_act * 2 * u
    assert_within(gx, gx_ref, (2 * (o + 1) * u + rel) * (gpre @ np.abs(w64).T)
                  + TINY[np.dtype(dtype)], "gx")
    assert_within(gw, gw_ref, (2 * (n + 1) * u + rel) * (np.abs(x64).T @ gpre)
                  + TINY[np.dtype(dtype)], "gw")
    assert_within(gb, gb_ref, (2 * (n + 1) * u + rel) * gpre.sum(axis=0) + TINY[np.dtype(dtype)],
                  "gb")


def _act_grad(g, saved, act):
    if act == "relu":
        return ref.relu_backward(g, saved)
    if act == "sigmoid":
        return ref.sigmoid_backward(g, saved)
    return g


@fixture_ok
@given(st.integers(1, 9), st.integers(1, 40), st.integers(1, 9), st.sampled_from(DTYPES),
       st.sampled_from([0.0, 1.0, 0.5]), st.data())
def test_gemm_with_beta_on_any_layout(gemm_kernel, m, k, n, dtype, beta, data):
    a, b = data.draw(matrix((m, k), dtype)), data.draw(matrix((k, n), dtype))
    if not (a.flags.c_contiguous or a.flags.f_contiguous):
        a = np.ascontiguousarray(a)          # gemm takes C or F operands (the wrappers copy others)
    if not (b.flags.c_contiguous or b.flags.f_contiguous):
        b = np.ascontiguousarray(b)
    c0 = data.draw(arrays((m, n), dtype=dtype))
    c = c0.copy()
    gemm_kernel.gemm(a, b, c, beta)
    a64, b64, c64 = a.astype(np.float64), b.astype(np.float64), c0.astype(np.float64)
    exact = a64 @ b64 + beta * c64
    u = EPS[np.dtype(dtype)] / 2
    # the float32 result rounds a K+1-term sum; the float64 "exact" value is
    # itself within K u64 (|a||b| + |beta c|)
    mag = np.abs(a64) @ np.abs(b64) + abs(beta) * np.abs(c64)
    assert_within(c, exact, ((k + 2) * u + (k + 2) * U64) * mag + TINY[np.dtype(dtype)], "gemm")


@fixture_ok
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 6), st.sampled_from(DTYPES), st.data())
def test_maxout_kernels_equal_reference_bit_for_bit(maxout_kernel, rows, units, pieces, dtype, data):
    x = laid_out(data.draw(arrays((rows, units * pieces), dtype=dtype)),
                 data.draw(st.sampled_from(LAYOUTS)))
    y, arg = K.maxout_forward(x, pieces)
    y_ref, arg_ref = ref.maxout_forward(x, pieces)
    assert_same(y, y_ref, "maxout y")
    np.testing.assert_array_equal(arg.astype(np.int64), arg_ref)     # first maximum, as argmax
    g = laid_out(data.draw(arrays(y.shape, dtype=dtype)), data.draw(st.sampled_from(LAYOUTS)))
    assert_same(K.maxout_backward(g, arg, pieces), ref.maxout_backward(g, arg_ref, pieces), "maxout g")


@fixture_ok
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6), st.sampled_from(DTYPES),
       st.sampled_from([0.0, 0.2, 0.5, 0.9]), st.integers(0, 2 ** 32 - 1), st.data())
def test_dropout_kernel_equals_reference_bit_for_bit(dropout_kernel, shape, dtype, p, seed, data):
    x = laid_out(data.draw(arrays(shape, dtype=dtype)), data.draw(st.sampled_from(LAYOUTS)))
    u = K.uniform_draws(np.random.default_rng(seed), shape)        # words, or float32 draws
    assert_same(K.dropout_forward(x, u, p), ref.dropout_forward(x, u, p), "dropout")
    assert_same(K.dropout_backward(x, u, p), ref.dropout_backward(x, u, p), "dropout backward")


@fixture_ok
@given(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=6), st.sampled_from(DTYPES),
       floats(0, 1), floats(0, 1), st.booleans(), st.data())
def test_sgd_kernel_equals_reference_bit_for_bit(update_kernel, shape, dtype, lr, momentum,
                                                 nesterov, data):
    p0, v0 = data.draw(arrays(shape, dtype=dtype)), data.draw(arrays(shape, dtype=dtype))
    g = laid_out(data.draw(arrays(shape, dtype=dtype)), data.draw(st.sampled_from(LAYOUTS)))
    p, v, p_ref, v_ref = p0.copy(), v0.copy(), p0.copy(), v0.copy()
    K.sgd_momentum_(p, v, g, lr, momentum, nesterov)
    ref.sgd_momentum_(p_ref, v_ref, g, lr, momentum, nesterov)
    assert_same(p, p_ref, "p")
    assert_same(v, v_ref, "v")


@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_float32_and_float64_forward_agree_through_a_layer(n, i, data):
    """The same tiny G-like layer in float32 and float64 on the active path:
    the float32 result within its own rounding of the float64 one."""
    x = data.draw(arrays((n, i), dtype=np.float32))
    w = data.draw(arrays((i, 3), dtype=np.float32))
    y32 = F.linear(x, w, activation="sigmoid").data
    y64 = F.linear(x.astype(np.float64), w.astype(np.float64), activation="sigmoid").data
    mag = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64))
    u = EPS[np.dtype(np.float32)] / 2
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    assert_within(y32, y64, (i + 1) * u * mag / 4 * 2 + 2 * (T + 2) * 2 * u * np.abs(y64), "f32 vs f64")


def test_hypothesis_profile_is_loaded():
    """CI runs the deterministic profile (conftest.py); HYPOTHESIS_PROFILE picks another."""
    want = ("ci" if os.environ.get("CI", "").lower() == "true"
            else os.environ.get("HYPOTHESIS_PROFILE", "ci"))
    assert settings.get_current_profile_name() == want
    if want == "ci":
        assert settings().derandomize and settings().deadline is None
