"""The activations (npgan._kernels.elementwise over activations.pyx) equal their
references (npgan/_kernels/reference.py), on odd shapes, views and both float
dtypes (the kernels' on/off switch: tests/test_settings.py).

Comparisons with the compiled module take the ``activations_kernel`` fixture
(skipped when the extension is disabled or not built); the rest runs on
whichever path is active, so both CI runs check it.
"""
import numpy as np
import pytest

from npgan import Tensor
from npgan import _kernels as K
from npgan._kernels import reference as ref

FORWARD = ["relu_forward", "sigmoid_forward", "softplus_forward", "log_sigmoid_forward"]
BACKWARD = ["relu_backward", "sigmoid_backward", "softplus_backward", "log_sigmoid_backward"]
SPECIAL = np.array([0.0, -0.0, 30.0, -30.0, 1e4, -1e4, 88.0, -88.0, 710.0, -710.0, 1e-30, -1e-30])

# the tolerances we promise: float64 to a few ulps, float32 to 1e-6 relative
RTOL = {np.float32: 1e-6, np.float64: 4 * np.finfo(np.float64).eps}
ATOL = {np.float32: np.finfo(np.float32).tiny, np.float64: np.finfo(np.float64).tiny}


def _base(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = 5 * rng.standard_normal(shape)
    flat = x.reshape(-1)
    n = min(flat.size, SPECIAL.size)
    flat[:n] = SPECIAL[:n]
    return x.astype(dtype)


def _inputs(dtype):
    """(label, array) pairs: odd shapes, empty, 0-d, and non-contiguous views."""
    big = _base((14, 26), dtype, seed=1)
    return [
        ("(7,13)", _base((7, 13), dtype)),
        ("(1,)", _base((1,), dtype)),
        ("(3,0)", _base((3, 0), dtype)),
        ("0-d", _base((), dtype)),
        ("(2,3,5)", _base((2, 3, 5), dtype)),
        ("transposed", _base((13, 7), dtype).T),
        ("strided", big[::2, ::3]),
        ("reversed", big[::-1, 5]),
        ("fortran", np.asfortranarray(_base((5, 4), dtype))),
    ]


def _check(actual, desired, dtype, shape):
    assert actual.shape == shape
    assert actual.dtype == dtype
    np.testing.assert_allclose(actual, desired, rtol=RTOL[dtype], atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FORWARD)
def test_compiled_forward_equals_reference(activations_kernel, name, dtype):
    for label, x in _inputs(dtype):
        keep = x.copy()
        out = getattr(K, name)(x)
        _check(out, getattr(ref, name)(x), dtype, x.shape)
        np.testing.assert_array_equal(x, keep, err_msg=f"{name} modified its input ({label})")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", BACKWARD)
def test_compiled_backward_equals_reference(activations_kernel, name, dtype):
    for label, x in _inputs(dtype):
        g = np.random.default_rng(2).standard_normal(x.shape[::-1]).astype(dtype).T  # a view
        if name == "relu_backward":
            x = ref.relu_forward(x)          # relu's backward takes y = relu(x)
        out = getattr(K, name)(g, x)
        _check(out, getattr(ref, name)(g, x), dtype, x.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_functions_called_directly(activations_kernel, dtype):
    """The raw kernels on flat contiguous arrays, without the wrappers."""
    x = _base((37,), dtype)
    g = np.linspace(-2, 2, 37).astype(dtype)
    for name in FORWARD:
        out = np.empty_like(x)
        getattr(activations_kernel, name)(x, out)
        _check(out, getattr(ref, name)(x), dtype, x.shape)
    out = np.empty_like(x)
    activations_kernel.sigmoid_backward(g, x, out)
    _check(out, ref.sigmoid_backward(g, x), dtype, x.shape)
    for sign, name in ((1, "softplus_backward"), (-1, "log_sigmoid_backward")):
        activations_kernel.sigmoid_times(g, x, sign, out)
        _check(out, getattr(ref, name)(g, x), dtype, x.shape)


def test_compiled_path_is_taken_when_enabled(activations_kernel, monkeypatch):
    """With kernels on, Tensor ops do not call the references (so the
    comparisons above compare two different implementations)."""
    for name in FORWARD:
        monkeypatch.setattr(ref, name, _boom)
    t = Tensor(np.linspace(-3, 3, 7))
    t.relu(), t.sigmoid(), t.softplus(), t.log_sigmoid()


def _boom(*a, **k):
    raise AssertionError("reference called")


# ----------------------------------------------------------------------------- either path

def _sigmoid64(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus64(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_active_path_equals_float64_closed_forms(dtype):
    for label, x in _inputs(dtype):
        x64 = x.astype(np.float64)
        g = np.full(x.shape, 1.5, dtype)
        want = {
            "relu_forward": np.maximum(x64, 0), "sigmoid_forward": _sigmoid64(x64),
            "softplus_forward": _softplus64(x64), "log_sigmoid_forward": -_softplus64(-x64),
            "sigmoid_backward": 1.5 * _sigmoid64(x64) * _sigmoid64(-x64),
            "softplus_backward": 1.5 * _sigmoid64(x64),
            "log_sigmoid_backward": 1.5 * _sigmoid64(-x64),
            "relu_backward": 1.5 * (x64 > 0),
        }
        for name, w in want.items():
            arg = (x,) if name.endswith("forward") else (g, np.maximum(x, 0) if name == "relu_backward" else x)
            out = getattr(K, name)(*arg)
            assert out.shape == x.shape and out.dtype == dtype, (name, label)
            assert np.all(np.isfinite(out)), (name, label)
            np.testing.assert_allclose(out, w.astype(dtype), rtol=RTOL[dtype], atol=ATOL[dtype],
                                       err_msg=f"{name} on {label}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FORWARD)
def test_nan_propagates_and_infinities(name, dtype):
    x = np.array([np.nan, np.inf, -np.inf, 1.0], dtype)
    out = getattr(K, name)(x)
    assert np.isnan(out[0]), f"{name} swallowed a NaN"
    np.testing.assert_allclose(out[1:], getattr(ref, name)(x)[1:], rtol=RTOL[dtype])


def test_binary_with_broadcast_gradient_falls_back():
    x = _base((4, 3), np.float64)
    g = np.arange(3.0)
    np.testing.assert_allclose(K.sigmoid_backward(g, x), ref.sigmoid_backward(g, x), rtol=1e-15)


def test_other_float_dtypes_use_the_reference():
    x = np.linspace(-3, 3, 7).astype(np.float16)
    out = K.sigmoid_forward(x)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out, _sigmoid64(x.astype(np.float64)), rtol=1e-3)


def test_maxout_reference_against_loops():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 6))
    y, arg = ref.maxout_forward(x, 3)
    g = rng.standard_normal(y.shape)
    gx = ref.maxout_backward(g, arg, 3)
    assert y.shape == (3, 4, 2) and gx.shape == x.shape
    want_gx = np.zeros_like(x)
    for i in range(3):
        for j in range(4):
            for u in range(2):
                group = x[i, j, 3 * u:3 * u + 3]
                assert y[i, j, u] == group.max()
                want_gx[i, j, 3 * u + int(np.argmax(group))] = g[i, j, u]
    np.testing.assert_array_equal(gx, want_gx)
    assert ref.maxout_backward(g.astype(np.float32), arg, 3).dtype == np.float32


def test_reference_kernels_fixture(reference_kernels):
    assert K.load("activations") is None
