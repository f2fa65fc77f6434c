"""The CuPy backend on an NVIDIA GPU: every op, layer, optimizer, the training
step of the paper's model, Parzen and checkpoints equal their NumPy results.

Marked ``gpu`` (``pytest -m gpu`` runs only these; ``-m "not gpu"`` leaves them
out) and skipped as a whole where CuPy is not installed or no CUDA device is
usable. The tables of ops, layers, optimizers and trainers are the ones
test_backend.py runs through the strict checking namespace; here they run on
the real device and are compared with the NumPy backend. Dropout masks and z
are drawn on the host from numpy Generators, so the same seeds give the same
masks and noise on both backends and whole training steps can be compared.

Tolerances: float64 results agree to ~1e-12 (only summation order and the last
ulp of exp/log differ); float32 results to ~1e-5, the difference between two
BLAS libraries' float32 GEMMs.
"""
import contextlib

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
try:
    _DEVICES = cupy.cuda.runtime.getDeviceCount()
except Exception as e:  # CUDA driver missing or broken
    pytest.skip(f"CuPy is installed but no CUDA device is usable: {e}", allow_module_level=True)
if _DEVICES < 1:
    pytest.skip("CuPy is installed but no CUDA device is visible", allow_module_level=True)

import npgan  # noqa: E402
from npgan import _kernels, backend, checkpoint, gradcheck, models, settings, train  # noqa: E402
from npgan.metrics import parzen  # noqa: E402
from npgan._kernels import reference as ref  # noqa: E402
from npgan.tensor import Tensor  # noqa: E402

from test_backend import (LAYERS, OPS, OPTIMIZERS, TRAINERS, _host_params, _optimise,  # noqa: E402
                          _run_layer, _train, assert_same_change, assert_same_changes,
                          forward_backward)
from test_nn import with_params  # noqa: E402
from test_train import make as make_trainer  # noqa: E402

pytestmark = pytest.mark.gpu


@contextlib.contextmanager
def on(name):
    """Backend ``name`` ("cupy" or "numpy") inside the block, restored after."""
    prev = (backend.xp, backend.name)
    npgan.use(name)
    try:
        yield backend.xp
    finally:
        backend.set_module(*prev)


@pytest.fixture
def gpu():
    with on("cupy") as xp:
        yield xp


def to_host(a):
    assert isinstance(a, cupy.ndarray), f"expected a cupy.ndarray, got {type(a).__name__}"
    return a.get()


def tol(dtype):
    return dict(rtol=1e-12, atol=1e-13) if np.dtype(dtype) == np.float64 else dict(rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- backend

def test_cupy_backend_is_selected_and_arrays_live_on_the_device(gpu):
    assert backend.xp is cupy and backend.name == "cupy" and not backend.is_numpy()
    t = Tensor(np.arange(3.0), requires_grad=True)
    assert isinstance(t.data, cupy.ndarray)
    (t * t).sum().backward()
    assert isinstance(t.grad, cupy.ndarray)
    assert type(t.numpy()) is np.ndarray and type(backend.to_numpy(t.grad)) is np.ndarray
    assert _kernels.cuda_kernels() is not None and _kernels.load("activations") is None


def test_no_kernels_switch_turns_the_cuda_kernels_off(gpu, monkeypatch):
    monkeypatch.setattr(settings, "_values", dict(settings._values, kernels=False))
    assert _kernels.cuda_kernels() is None
    x = cupy.linspace(-3, 3, 7)
    cupy.testing.assert_allclose(_kernels.sigmoid_forward(x), ref.sigmoid_forward(x), rtol=1e-15)


# ----------------------------------------------------------------------------- fused activations

UNARY_K = ["relu_forward", "sigmoid_forward", "softplus_forward", "log_sigmoid_forward"]
BINARY_K = ["relu_backward", "sigmoid_backward", "softplus_backward", "log_sigmoid_backward"]
EXTREMES = [0.0, -0.0, 1e-30, -1e-30, 15.0, -15.0, 40.0, -40.0, 100.0, -100.0, 1e3, -1e3]


def _inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if shape == "view":                                   # non-contiguous
        return (4 * rng.standard_normal((20, 31))).astype(dtype)[:, ::3]
    if shape == "extremes":
        return np.array(EXTREMES, dtype=dtype)
    return (4 * rng.standard_normal(shape)).astype(dtype)


SHAPES = [(), (0,), (1,), (7,), (33, 65), "view", "extremes"]


def _cpu(name, *arrays):
    with on("numpy"):
        return getattr(ref, name)(*arrays)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", UNARY_K)
def test_activation_forward_kernel_equals_reference(name, shape, dtype, gpu):
    x = _inputs(shape, dtype)
    xd = cupy.asarray(x)
    assert _kernels._loader.cuda_tier(xd) is not None                # the CUDA kernel is what runs
    y = getattr(_kernels, name)(xd)
    assert y.dtype == dtype and y.shape == x.shape
    tiny = dict(atol=10 * np.finfo(dtype).tiny)           # subnormals may flush on the device
    np.testing.assert_allclose(to_host(y), to_host(getattr(ref, name)(xd)), rtol=tol(dtype)["rtol"], **tiny)
    np.testing.assert_allclose(to_host(y), _cpu(name, x), rtol=tol(dtype)["rtol"], **tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", BINARY_K)
def test_activation_backward_kernel_equals_reference(name, shape, dtype, gpu):
    x = _inputs(shape, dtype)
    if name == "relu_backward":
        x = np.maximum(x, 0)                              # it takes y = relu(x)
    g = _inputs(shape, dtype, seed=1)
    gd, xd = cupy.asarray(g), cupy.asarray(x)
    out = getattr(_kernels, name)(gd, xd)
    assert out.dtype == dtype and out.shape == x.shape
    tiny = dict(atol=10 * np.finfo(dtype).tiny)
    np.testing.assert_allclose(to_host(out), to_host(getattr(ref, name)(gd, xd)), rtol=tol(dtype)["rtol"], **tiny)
    np.testing.assert_allclose(to_host(out), _cpu(name, g, x), rtol=tol(dtype)["rtol"], **tiny)


def test_activation_kernels_leave_mixed_dtypes_to_the_reference(gpu):
    g, x = cupy.ones(5, cupy.float64), cupy.linspace(-2, 2, 5, dtype=cupy.float32)
    assert _kernels._loader.cuda_tier(g, x) is None
    cupy.testing.assert_allclose(_kernels.sigmoid_backward(g, x), ref.sigmoid_backward(g, x))


# ----------------------------------------------------------------------------- maxout

MAXOUT = [((4, 6), 3), ((5, 12), 4), ((2, 3, 4), 2), ((3, 5), 1), ((0, 6), 2), ((100, 1200), 5)]


@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,pieces", MAXOUT, ids=[f"{s}/{p}" for s, p in MAXOUT])
def test_maxout_kernels_equal_reference(shape, pieces, dtype, ties, gpu):
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 3, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    xd = cupy.asarray(x)
    y, arg = _kernels.maxout_forward(xd, pieces)
    ry, rarg = ref.maxout_forward(xd, pieces)
    np.testing.assert_array_equal(to_host(y), to_host(ry))
    np.testing.assert_array_equal(to_host(arg), to_host(rarg))     # first maximum, as argmax
    with on("numpy"):
        cy, carg = ref.maxout_forward(x, pieces)
    np.testing.assert_array_equal(to_host(y), cy)
    np.testing.assert_array_equal(to_host(arg), carg)
    g = cupy.asarray(rng.standard_normal(y.shape).astype(dtype))
    gx = _kernels.maxout_backward(g, arg, pieces)
    assert gx.shape == x.shape and gx.dtype == dtype
    np.testing.assert_array_equal(to_host(gx), to_host(ref.maxout_backward(g, rarg, pieces)))


def test_maxout_on_a_non_contiguous_view(gpu):
    x = cupy.asarray(np.random.default_rng(1).standard_normal((6, 20)))[::2, :12]
    y, arg = _kernels.maxout_forward(x, 3)
    ry, rarg = ref.maxout_forward(x, 3)
    cupy.testing.assert_array_equal(y, ry)
    cupy.testing.assert_array_equal(arg, rarg)


# ----------------------------------------------------------------------------- every op, layer, optimizer

@pytest.mark.parametrize("name,fn,arrays", OPS, ids=[o[0] for o in OPS])
def test_op_on_gpu_equals_numpy_and_passes_gradcheck(name, fn, arrays):
    with on("numpy"):
        ref_out, ref_grads = forward_backward(fn, arrays)
    with on("cupy"):
        out, grads = forward_backward(fn, arrays)
        np.testing.assert_allclose(to_host(out), ref_out, rtol=1e-10, atol=1e-12, err_msg="forward")
        for i, (g, rg) in enumerate(zip(grads, ref_grads)):
            if rg is None:
                assert g is None
            else:
                np.testing.assert_allclose(to_host(g), rg, rtol=1e-10, atol=1e-12,
                                           err_msg=f"gradient of input {i}")
        assert gradcheck(fn, *arrays)                    # float64, on the GPU


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", LAYERS)
def test_layer_on_gpu_equals_numpy(name, dtype):
    with on("numpy"):
        _, ref_out, ref_gx, ref_gp = _run_layer(name, dtype)
    t = tol(dtype) if dtype == "float64" else dict(rtol=1e-4, atol=1e-6)
    with on("cupy"):
        layer, out, gx, gp = _run_layer(name, dtype)
        np.testing.assert_allclose(to_host(out), ref_out, err_msg="forward", **t)
        np.testing.assert_allclose(to_host(gx), ref_gx, err_msg="input gradient", **t)
        for (pname, _), g, rg in zip(layer.named_parameters(), gp, ref_gp):
            np.testing.assert_allclose(to_host(g), rg, err_msg=pname, **t)
        assert all(type(v) is np.ndarray for v in layer.state_dict().values())


@pytest.mark.parametrize("name", ["Linear", "Maxout", "Sequential"])
def test_gradcheck_layer_on_gpu(name, gpu):
    from test_backend import _layers
    layer = _layers(np.random.default_rng(0))[name].to("float64")
    fn, params = with_params(layer, layer)
    assert all(isinstance(p, cupy.ndarray) for p in params)
    assert gradcheck(fn, np.random.default_rng(1).standard_normal((4, 5)), *params)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_steps_on_gpu_equal_numpy(name):
    with on("numpy"):
        ref_params, _ = _optimise(name)
    with on("cupy"):
        got, opt = _optimise(name)
        for g, r in zip(got, ref_params):
            np.testing.assert_allclose(to_host(g), r, rtol=1e-6, atol=1e-7)
        state = opt.state_dict()
    with on("numpy"):
        _, resumed = _optimise(name, steps=0, state=state)       # GPU state resumes on the CPU
        assert resumed.steps == 3


# ----------------------------------------------------------------------------- training

#: GPU vs CPU, float32, relative to a player's largest change (see
#: test_backend.CHANGE_RTOL): 1e-4 for the summation order, x 10 for the CUDA
#: math library's exp/log (a few ulps) and a maxout near-tie routed differently.
GPU_CHANGE_RTOL = {"float32": 1e-3, "float64": 3e-13}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(TRAINERS))
def test_tiny_trainer_steps_on_gpu_equal_numpy(kind, dtype):
    """Three steps on each backend: each parameter's change agrees (the
    values alone would not show it: G's weights move ~3e-8 per step)."""
    with on("numpy"):
        before = _host_params(_train(TRAINERS[kind], 0, dtype)[0])
        ref_t, ref_stats = _train(TRAINERS[kind], 3, dtype)
    rtol = GPU_CHANGE_RTOL[dtype]
    with on("cupy"):
        t, stats = _train(TRAINERS[kind], 3, dtype)
        for s, rs in zip(stats, ref_stats):
            for k in s:
                assert s[k] == pytest.approx(rs[k], rel=rtol, abs=rtol), k
        assert_same_changes(t, _host_params(t), _host_params(ref_t), before, steps=3, rtol=rtol)


def _paper_step():
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 1, (200, 784)).astype(np.float32)
    G, D = models.paper_mnist(seed=0, train_images=data)
    lr, mom = train.paper_schedules()
    t = train.GANTrainer(G, D, data, batch_size=100, lr_schedule=lr, momentum_schedule=mom,
                         ema_decays=(0.999,), seed=0)
    ps = G.parameters() + D.parameters()
    before = [np.array(backend.to_numpy(p.data), copy=True) for p in ps]
    stats = t.step(data[:100])
    names = [f"G.{n}" for n, _ in G.named_parameters()] + [f"D.{n}" for n, _ in D.named_parameters()]
    return (stats, names, [backend.to_numpy(p.data) for p in ps],
            [backend.to_numpy(p.grad) for p in ps], [backend.to_numpy(a) for a in t.emas[0.999].avg],
            before)


def test_paper_model_training_step_on_gpu_equals_cpu():
    """One simultaneous step of the paper's MNIST G and D (float32, dropout, SGD
    with momentum and the paper's schedules): same masks and z on both backends.

    At initialisation the updates are tiny (G's ~1e-8), far below the float32
    spacing of the weights, so besides the weights the gradients themselves are
    compared, relative to their norm (1e-3: float32 GEMMs from two BLAS libraries
    differ by ~1e-6; a maxout/ReLU near-tie routed differently in one example
    moves one column by ~3e-4)."""
    with on("numpy"):
        cpu = _paper_step()
    with on("cupy"):
        gpu_ = _paper_step()
    (stats, names, params, grads, ema, before), (cstats, _, cparams, cgrads, cema, cbefore) = gpu_, cpu
    for k in cstats:
        assert stats[k] == pytest.approx(cstats[k], rel=1e-5, abs=1e-6), k
    for n, b, cb in zip(names, before, cbefore):
        np.testing.assert_array_equal(b, cb, err_msg=n)                # the same init
    for n, p, cp_, b in zip(names, params, cparams, cbefore):
        # the change, in norm, to the gradients' 1e-3 (one step from v = 0: -lr g)
        assert_same_change(p, cp_, b, steps=1, rtol=1e-3, norm=True, what=n)
    for n, g, cg in zip(names, grads, cgrads):
        err = np.linalg.norm(g.astype(np.float64) - cg) / max(np.linalg.norm(cg.astype(np.float64)), 1e-30)
        assert err < 1e-3, f"{n}: gradient differs from the CPU's by {err:.2e} (relative, in norm)"
    for a, b, b0 in zip(ema, cema, cbefore[:len(ema)]):
        # the average moves 0.001 of G's change: mostly under float32's ulp
        assert_same_change(a, b, b0, steps=1, rtol=1e-3, norm=True, moved=False, what="EMA")


@pytest.mark.parametrize("direction", ["gpu -> cpu", "cpu -> gpu"])
def test_checkpoint_moves_between_gpu_and_cpu(tmp_path, direction):
    first, second = ("cupy", "numpy") if direction == "gpu -> cpu" else ("numpy", "cupy")
    path = str(tmp_path / "ck.npz")
    with on("numpy"):
        before = _host_params(_train(TRAINERS["simultaneous (the paper's code)"], 0)[0])
        ref_t, _ = _train(TRAINERS["simultaneous (the paper's code)"], 4)
    with on(first):
        t, _ = _train(TRAINERS["simultaneous (the paper's code)"], 2)
        saved = _host_params(t)
        checkpoint.save(path, t.state_dict(), {"run": "gpu"})
    with on(second):
        t2 = make_trainer(simultaneous=True)
        t2.load_state_dict(checkpoint.load(path, {"run": "gpu"})["state"])
        for a, b in zip(_host_params(t2), saved):
            np.testing.assert_array_equal(a, b)                  # loaded exactly
        for i in (2, 3):
            t2.step(t2.data[8 * i:8 * (i + 1)])
        assert_same_changes(t2, _host_params(t2), _host_params(ref_t), before, steps=4,
                            rtol=GPU_CHANGE_RTOL["float32"])


# ----------------------------------------------------------------------------- Parzen

PARZEN = [("float64", 0.2, None), ("float64", np.logspace(-1, 0, 10), (64, 100)),
          ("float32", 0.2, None), ("float32", np.array([0.1, 0.3]), (50, 77))]


@pytest.mark.parametrize("dtype,sigma,blocks", PARZEN,
                         ids=[f"{d}-{'grid' if np.ndim(s) else s}-{b}" for d, s, b in PARZEN])
def test_parzen_on_gpu_equals_cpu(dtype, sigma, blocks):
    rng = np.random.default_rng(0)
    x, s = rng.uniform(0, 1, (300, 50)).astype(dtype), rng.uniform(0, 1, (500, 50)).astype(dtype)
    with on("numpy"):
        cpu = parzen.log_likelihood(x, s, sigma, blocks)
        cpu_numpy_path = parzen.log_likelihood(x, s, sigma, blocks, use_kernel=False)
    t = dict(rtol=1e-10, atol=1e-8) if dtype == "float64" else dict(rtol=1e-5, atol=2e-3)
    with on("cupy"):
        ll = parzen.log_likelihood(cupy.asarray(x), cupy.asarray(s), sigma, blocks)
        plain = parzen.log_likelihood(x, s, sigma, blocks, use_kernel=False)   # plain-CuPy path
        assert parzen.log_likelihood(x, s, sigma, blocks, use_kernel=True).shape == ll.shape
        np.testing.assert_allclose(to_host(ll), cpu, **t)
        np.testing.assert_allclose(to_host(ll), cpu_numpy_path, **t)
        np.testing.assert_allclose(to_host(plain), to_host(ll), **t)


def test_parzen_evaluate_on_gpu_equals_cpu():
    rng = np.random.default_rng(1)
    samples, test_x, valid_x = (rng.uniform(0, 1, (n, 30)).astype(np.float32) for n in (800, 400, 200))
    with on("numpy"):
        cpu = parzen.evaluate(samples, test_x, valid_x, progress=False)
    with on("cupy"):
        got = parzen.evaluate(samples, test_x, valid_x, progress=False)
    assert got["sigma"] == cpu["sigma"]
    assert got["ll_mean"] == pytest.approx(cpu["ll_mean"], rel=1e-5)
    np.testing.assert_allclose(got["valid_ll"], cpu["valid_ll"], rtol=1e-5)
