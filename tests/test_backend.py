"""Backend neutrality, checked on a machine without a GPU.

The library must do all its array work through ``backend.xp`` and cross
between host and device only through ``backend.asarray`` / ``backend.to_numpy``.
CuPy cannot run here, so the tests install ``strict_xp.strict`` as the backend:
NumPy's arithmetic, but its arrays (``DeviceArray``) are not ndarrays and refuse
every implicit conversion and every direct ``numpy.`` call, the way (and more
strictly than) ``cupy.ndarray`` does. Each test then runs library code on it
and checks that (1) nothing raised, (2) results and gradients are still
DeviceArrays (they stayed "on the device"), and (3) the numbers equal those of
the NumPy backend. The op tables are shared with the other test files.

Also here: backend selection (``use``, ``NPGAN_BACKEND``, messages when CuPy
or a device is missing), the ``cuda12`` extra and the ``gpu`` marker.
"""
import contextlib
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import npgan
from npgan import _kernels, backend, checkpoint, gradcheck, models, nn, optim, settings, train
from npgan.metrics import parzen
from npgan import functional as F
from npgan.gradcheck import GradcheckError
from npgan.tensor import Tensor, concatenate

from strict_xp import DeviceArray, StrictError, device_leaves, strict
from test_nn import with_params
from test_tensor import BINARY, UNARY, R
from test_train import make as make_trainer
from test_train import tiny as tiny_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def using(module, name):
    """The backend set to ``module`` inside the block, restored after."""
    prev = backend.set_module(module, name)
    try:
        yield module
    finally:
        backend.set_module(*prev)


def numpy_backend():
    return using(np, "numpy")


@pytest.fixture
def strict_backend():
    """Everything in the test runs on the strict checking namespace."""
    with using(strict, "strict"):
        yield strict


def host(a):
    """A device result as a host array, after checking it *is* on the device."""
    assert isinstance(a, DeviceArray), f"expected a device array, got {type(a).__name__}"
    return a.get()


def assert_close(device, ref, rtol=1e-12, atol=1e-14, what=""):
    np.testing.assert_allclose(host(device), ref, rtol=rtol, atol=atol, err_msg=what)


# ----------------------------------------------------------------------------- the checker itself

def test_checker_refuses_numpy_on_device_arrays(strict_backend):
    d = strict.asarray(R(3, 4))
    with pytest.raises(StrictError, match="numpy.exp"):
        np.exp(d)                                     # the deliberate stray call
    for stray in (lambda: np.asarray(d), lambda: np.array(d), lambda: np.sum(d),
                  lambda: np.shape(d), lambda: np.concatenate([d, d]),
                  lambda: np.add.at(d, [0], 1.0), lambda: np.maximum(d, 0)):
        with pytest.raises(StrictError):
            stray()


def test_checker_refuses_host_arrays_in_device_operations(strict_backend):
    d = strict.asarray(R(3, 4))
    for mixed in (lambda: d + np.ones((3, 4)), lambda: np.ones((3, 4)) * d,
                  lambda: strict.maximum(np.ones(3), 0), lambda: d.__setitem__(0, np.ones(4)),
                  lambda: strict.add.at(np.zeros(3), [0], 1.0)):
        with pytest.raises(StrictError):
            mixed()
    with pytest.raises(AttributeError, match="host"):
        strict.random.default_rng(0)          # random numbers are drawn on the host by design


def test_checker_lets_the_namespace_and_methods_work(strict_backend):
    a = R(3, 4)
    d = strict.asarray(a)
    assert not isinstance(d, np.ndarray) and isinstance(d, strict.ndarray)
    results = {
        "sum": (d.sum(axis=1, keepdims=True), a.sum(axis=1, keepdims=True)),
        "full sum (0-d, as CuPy)": (d.sum(), np.asarray(a.sum())),
        "reshape.T": (d.reshape(4, 3).T, a.reshape(4, 3).T),
        "index": (d[1:, ::2], a[1:, ::2]),
        "host index array": (d[np.array([0, 0, 2])], a[[0, 0, 2]]),
        "operators": ((-d * 2 + 1) / 3 - (d ** 2 @ d.T)[:, :1], (-a * 2 + 1) / 3 - (a ** 2 @ a.T)[:, :1]),
        "compare": (abs(d) > 0.5, abs(a) > 0.5),
        "numpy scalar on the left": (np.float64(2.0) * d, 2.0 * a),
        "ufunc": (strict.exp(d), np.exp(a)),
        "function": (strict.where(d > 0, d, 0), np.where(a > 0, a, 0)),
        "astype": (d.astype(np.float32), a.astype(np.float32)),
    }
    for what, (dev, ref) in results.items():
        assert_close(dev, ref, what=what)
    g = strict.zeros(3)
    strict.add.at(g, np.array([0, 0, 2]), strict.asarray([1.0, 2.0, 3.0]))
    assert_close(g, [3.0, 0.0, 3.0])
    d[0] += 1
    assert d.get()[0, 0] == a[0, 0] + 1
    assert a[0, 0] == R(3, 4)[0, 0]               # asarray copied: host data untouched
    got = d.get()
    assert type(got) is np.ndarray
    got[:] = 0
    assert d.get().any()                          # .get() is a copy


def test_strict_backend_is_installed_and_restored():
    with using(strict, "strict"):
        assert backend.xp is strict and backend.name == "strict" and not backend.is_numpy()
        assert _kernels.load("activations") is None          # compiled path off
        assert _kernels.cuda_kernels() is None                # and CuPy's too
        assert isinstance(Tensor([1.0, 2.0]).data, DeviceArray)
    assert backend.xp is np and backend.name == "numpy"


# ----------------------------------------------------------------------------- every op

def _ce_labels():
    return backend.asarray(np.array([2, 0, 1, 2]))


FUNCTIONAL = [
    ("F.linear", F.linear, (R(4, 3), R(3, 2, seed=1), R(2, seed=2))),
    ("F.maxout", lambda x: F.maxout(x, 2), (R(3, 8),)),
    ("F.clip", lambda x: F.clip(x, -1.0, 1.0), (np.array([[-2.0, -0.3, 0.4, 1.7, 0.9, -1.2]]),)),
    ("bce t=0", lambda l: F.binary_cross_entropy_with_logits(l, 0), (3 * R(4, 1),)),
    ("bce t=1 none", lambda l: F.binary_cross_entropy_with_logits(l, 1, "none"), (3 * R(4, 1),)),
    ("bce t=0.3", lambda l: F.binary_cross_entropy_with_logits(l, 0.3), (3 * R(4, 1),)),
    ("bce host targets", lambda l: F.binary_cross_entropy_with_logits(
        l, np.random.default_rng(1).uniform(0, 1, (4, 3))), (3 * R(4, 3),)),
    ("bce broadcast targets", lambda l: F.binary_cross_entropy_with_logits(
        l, np.array([0.0, 1.0, 0.5]), "none"), (3 * R(4, 3),)),
    ("bce tensor targets (grad wrt both)", F.binary_cross_entropy_with_logits,
     (3 * R(4, 3), np.random.default_rng(1).uniform(0, 1, (4, 3)))),
    ("dropout fixed mask", lambda x: F.dropout(x, 0.4, rng=np.random.default_rng(5)), (R(6, 7),)),
    ("log_softmax axis -1", lambda x: F.log_softmax(x), (3 * R(4, 5),)),
    ("log_softmax axis 0", lambda x: F.log_softmax(x, axis=0), (3 * R(4, 5),)),
    ("cross_entropy host labels", lambda x: F.cross_entropy(x, np.array([2, 0, 1, 2])), (3 * R(4, 3),)),
    ("cross_entropy device labels none", lambda x: F.cross_entropy(x, _ce_labels(), "none"),
     (3 * R(4, 3),)),
    ("concatenate axis 0", lambda a, b: concatenate([a, b], axis=0), (R(2, 3), R(4, 3, seed=1))),
    ("concatenate axis -1 + constant", lambda a, b: concatenate(
        [a, Tensor(R(2, 1, seed=9)), b], axis=-1), (R(2, 3), R(2, 2, seed=1))),
]

OPS = ([(n, fn, (a, b)) for n, fn, a, b in BINARY] + [(n, fn, (x,)) for n, fn, x in UNARY]
       + FUNCTIONAL)


def forward_backward(fn, arrays):
    """Output data and the gradient of every input, for a fixed upstream gradient."""
    ts = [Tensor(backend.asarray(a), requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(backend.asarray(np.random.default_rng(7).standard_normal(out.shape)))
    return out.data, [t.grad for t in ts]


@pytest.mark.parametrize("name,fn,arrays", OPS, ids=[o[0] for o in OPS])
def test_op_on_device_equals_numpy_and_passes_gradcheck(name, fn, arrays):
    with numpy_backend():
        ref_out, ref_grads = forward_backward(fn, arrays)
    with using(strict, "strict"):
        out, grads = forward_backward(fn, arrays)
        assert_close(out, ref_out, what="forward")
        for i, (g, rg) in enumerate(zip(grads, ref_grads)):
            if rg is None:
                assert g is None
            else:
                assert_close(g, rg, what=f"gradient of input {i}")
        assert gradcheck(fn, *arrays)


def test_float32_stays_float32_on_device(strict_backend):
    x = Tensor(R(3, 4).astype(np.float32), requires_grad=True)
    y = (x.sigmoid() * 2.0 + x.softplus() - x.log_sigmoid() + x.relu()).maxout(2).sum()
    y.backward()
    assert y.dtype == np.float32 and host(x.grad).dtype == np.float32


def test_gradcheck_reports_a_wrong_backward_on_device(strict_backend):
    def bad(x):                        # d/dx x^2 claimed to be x
        return Tensor.make(x.data * x.data, (x,), lambda g: (g * x.data,), "bad_square")
    with pytest.raises(GradcheckError, match="disagrees"):
        gradcheck(bad, R(3, 2))
    assert gradcheck(lambda x: (x * x).sum(axis=0), R(30, 20), mode="random")


# ----------------------------------------------------------------------------- layers

def _layers(rng):
    return {
        "Linear": nn.Linear(5, 4, init="normal", std=0.5, rng=rng),
        "Linear no bias": nn.Linear(5, 3, bias=False, init="xavier", rng=rng),
        "Maxout": nn.Maxout(5, units=3, pieces=2, init="normal", std=1.0, rng=rng),
        "Dropout train": nn.Dropout(0.3, rng=3),
        "Dropout eval": nn.Dropout(0.3, rng=3).eval(),
        "Sequential": nn.Sequential(nn.Linear(5, 6, init="kaiming", rng=rng), nn.ReLU(),
                                    nn.Maxout(6, 2, 2, init="normal", std=1.0, rng=rng),
                                    nn.Sigmoid(), nn.Linear(2, 3, rng=rng), nn.Tanh()),
        "Generator": models.Generator(z_dim=5, hidden=7, out=4, rng=rng,
                                      output_bias=np.linspace(-1, 1, 4)),
        "Discriminator (train: dropout)": models.Discriminator(inp=5, units=3, pieces=2,
                                                               irange=0.5, rng=rng),
    }


LAYERS = list(_layers(np.random.default_rng(0)))


def _run_layer(name, dtype):
    layer = _layers(np.random.default_rng(0))[name].to(dtype)
    x = Tensor(backend.asarray(R(6, 5, seed=3).astype(dtype)), requires_grad=True)
    out = layer(x)
    out.backward(backend.asarray(R(*out.shape, seed=4).astype(dtype)))
    return layer, out.data, x.grad, [p.grad for p in layer.parameters()]


def _layer_error_bound(layer, x, g, dtype):
    """(forward, input-gradient, parameter-gradient) bounds on how far one
    backend's result may be from the exact one, from max-norms: a product
    over K terms of magnitude <= s is within (K + 1) u s (Higham 3.5, any
    order); an error e in a layer's input reaches its output as K max|W| e;
    ReLU, maxout, sigmoid, tanh are 1-Lipschitz with |derivative| <= 1 and
    add a few ulps; dropout scales by 1/keep. Layers: the Linear modules in
    order (Maxout's included). Two backends differ by twice the bound. (A
    ReLU or maxout tie routed differently would break it: none at these
    random inputs.)"""
    u = np.finfo(dtype).eps / 2
    n = len(x)
    scale = max([1.0] + [1 / (1 - m.p) for m in layer.modules()
                         if isinstance(m, nn.Dropout) and m.training])
    linears = [m for m in layer.modules() if isinstance(m, nn.Linear)]
    m, e, mags = float(np.abs(x).max()), 0.0, []
    for lin in linears:
        k, w = lin.in_features, float(np.abs(backend.to_numpy(lin.weight.data)).max())
        b = 0.0 if lin.bias is None else float(np.abs(backend.to_numpy(lin.bias.data)).max())
        m, e = scale * m, scale * e + 2 * u * scale * m
        m_in, e_in = m, e
        s = k * w * m + b
        e = k * w * e + (k + 1) * u * s + 8 * u * max(s, 1.0)
        m = max(s, 1.0)
        mags.append((m_in, e_in, k, w, lin.out_features, e))
    fwd = e
    big, eg, p_err = float(np.abs(g).max()), 0.0, 0.0
    for m_in, e_in, k, w, k_out, e_out in reversed(mags):
        # the activation's derivative (<= 1, Lipschitz <= 1) at a point off by e_out
        eg = eg + (e_out + 8 * u) * big
        # weight gradient: n terms x_in g; bias: n terms g
        p_err = max(p_err, n * (e_in * big + m_in * eg) + (n + 1) * u * n * m_in * big)
        eg, big = scale * (k_out * w * eg + (k_out + 1) * u * k_out * w * big), scale * k_out * w * big
    return fwd, eg, p_err


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", LAYERS)
def test_layer_on_device_equals_numpy(name, dtype):
    """Forward and gradients on the device equal NumPy's, within twice
    _layer_error_bound. The bound is crude (max-norms) but CPU-independent:
    float64 <= 1.3e-9 on values of order 1, the sharp check; float32 forward
    and input gradient <= 2e-2 (the bound grows with max|W| per layer), its
    parameter gradients' bound is only meaningful for the one-layer rows."""
    with numpy_backend():
        _, ref_out, ref_gx, ref_gp = _run_layer(name, dtype)
        layer = _layers(np.random.default_rng(0))[name].to(dtype)
        fwd, ginp, gpar = _layer_error_bound(layer, R(6, 5, seed=3).astype(dtype),
                                             R(*ref_out.shape, seed=4).astype(dtype), dtype)
    with using(strict, "strict"):
        layer, out, gx, gp = _run_layer(name, dtype)
        assert_close(out, ref_out, rtol=0, atol=2 * fwd, what="forward")
        assert_close(gx, ref_gx, rtol=0, atol=2 * ginp, what="input gradient")
        for (pname, _), g, rg in zip(layer.named_parameters(), gp, ref_gp):
            assert_close(g, rg, rtol=0, atol=2 * gpar, what=pname)
        state = layer.state_dict()                    # host copies, always
        assert all(type(v) is np.ndarray for v in state.values())
    if dtype == "float64":
        assert 2 * max(fwd, ginp, gpar) < 2e-9                       # not vacuous
    else:
        assert 2 * max(fwd, ginp) < 5e-2


@pytest.mark.parametrize("name", ["Linear", "Maxout", "Sequential"])
def test_gradcheck_layer_on_device(name, strict_backend):
    layer = _layers(np.random.default_rng(0))[name].to("float64")
    fn, params = with_params(layer, layer)
    assert all(isinstance(p, DeviceArray) for p in params)
    assert gradcheck(fn, R(4, 5, seed=1), *params)


def test_state_dict_round_trip_host_and_device(strict_backend):
    a = models.Generator(z_dim=3, hidden=5, out=4, rng=np.random.default_rng(0))
    b = models.Generator(z_dim=3, hidden=5, out=4, rng=np.random.default_rng(1))
    b.load_state_dict(a.state_dict())                                  # host arrays
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(host(pa.data), host(pb.data))
    c = models.Generator(z_dim=3, hidden=5, out=4, rng=np.random.default_rng(2))
    c.load_state_dict({n: p.data for n, p in a.named_parameters()})    # device arrays
    for pa, pc in zip(a.parameters(), c.parameters()):
        np.testing.assert_array_equal(host(pa.data), host(pc.data))
        assert pc.data is not pa.data
    with pytest.raises(ValueError, match="shape"):
        c.load_state_dict({n: p.data[:1] for n, p in a.named_parameters()})


def test_paper_model_forward_equals_numpy():
    z = np.random.default_rng(5).uniform(-1.7, 1.7, (3, 100)).astype(np.float32)
    images = np.random.default_rng(6).uniform(0, 1, (20, 784))
    outs = {}
    for module, name in ((np, "numpy"), (strict, "strict")):
        with using(module, name):
            G, D = models.paper_mnist(seed=0, train_images=images)
            D.eval()
            fake = G(backend.asarray(z))
            outs[name] = (backend.to_numpy(fake.data), backend.to_numpy(D(fake).data),
                          isinstance(fake.data, DeviceArray))
    assert outs["strict"][2]
    # each backend is within the NumPy reference forward's rounding bound
    # (test_models: Higham 3.5 propagated), so within twice it of the other
    from test_models import reference_discriminator, reference_generator
    with numpy_backend():
        G, D = models.paper_mnist(seed=0, train_images=images)
        rg = reference_generator(G, z)
        rd = reference_discriminator(D, outs["numpy"][0])
    for what, k, ref in (("G", 0, rg), ("D", 1, rd)):
        err = np.abs(outs["strict"][k].astype(np.float64) - outs["numpy"][k])
        assert np.all(err <= 2 * ref.e), (what, err.max(), ref.e.min())


# ----------------------------------------------------------------------------- optimizers

OPTIMIZERS = {
    "SGD": lambda ps: optim.SGD(ps, lr=0.1),
    "SGD momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.5),
    "SGD nesterov": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.7, nesterov=True),
    "Adam": lambda ps: optim.Adam(ps, lr=0.01, betas=(0.5, 0.999)),
}


def _optimise(name, steps=3, state=None):
    ps = [nn.Parameter(backend.asarray(R(3, 4, seed=i).astype(np.float32))) for i in range(2)]
    opt = OPTIMIZERS[name](ps)
    if state is not None:
        opt.load_state_dict(state)
    for s in range(steps):
        for i, p in enumerate(ps):
            p.grad = backend.asarray(R(3, 4, seed=10 * s + i).astype(np.float32))
        opt.step()
    return [p.data for p in ps], opt


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_steps_on_device_equal_numpy(name):
    with numpy_backend():
        ref, ref_opt = _optimise(name)
    with using(strict, "strict"):
        got, opt = _optimise(name)
        # elementwise updates (no sums): per step a few roundings of terms no
        # larger than the parameters (Adam: a sqrt and a division), each half
        # an ulp of max|p|; 3 steps: 16 ulps of the tensor's scale
        for g, r in zip(got, ref):
            assert_close(g, r, rtol=0, atol=32 * np.finfo(np.float32).eps / 2 * np.abs(r).max())
        state = opt.state_dict()
        assert not device_leaves(state), "optimizer state_dict must hold host arrays only"
        # the state saved on the device resumes on the host, and the other way round
        _, resumed = _optimise(name, steps=0, state=state)
        assert resumed.steps == opt.steps
    with numpy_backend():
        _, from_device = _optimise(name, steps=0, state=state)
        for a, b in zip(from_device._state_arrays().values(), ref_opt._state_arrays().values()):
            for x, y in zip(a, b):                   # as above
                np.testing.assert_allclose(x, y, rtol=0, atol=32 * np.finfo(np.float32).eps / 2
                                           * max(np.abs(y).max(), np.finfo(np.float32).tiny))


# ----------------------------------------------------------------------------- the trainer

TRAINERS = {
    "simultaneous (the paper's code)": dict(simultaneous=True),
    "Algorithm 1, k=2, minimax": dict(simultaneous=False, k=2, g_loss="minimax"),
}


def _host_params(t):
    """Host copies of G's then D's parameters (copies: the NumPy backend
    updates the arrays in place)."""
    return [np.array(backend.to_numpy(p.data), copy=True) for p in t.G.parameters() + t.D.parameters()]


def _make(kwargs, dtype="float32"):
    """test_train.make's trainer (tiny G and D, the paper's schedules), in ``dtype``."""
    if dtype == "float32":
        return make_trainer(**kwargs)
    G, D, data = tiny_models(0, dtype=dtype)
    lr, mom = train.paper_schedules()
    kw = {"k": 1, "g_loss": "nonsaturating", **kwargs}
    return train.GANTrainer(G, D, data, batch_size=8, lr_schedule=lr, momentum_schedule=mom,
                            ema_decays=(0.9,), seed=0, sample_z=models.z_sampler("gaussian", 5, dtype=dtype),
                            **kw)


def _train(kwargs, steps, dtype="float32"):
    t = _make(kwargs, dtype)
    stats = [t.step(t.data[8 * i:8 * (i + 1)]) for i in range(steps)]
    return t, stats


#: Relative tolerance on a training step's parameter *change*, against the
#: largest change any parameter of the same player (G or D) makes. Two backends
#: sum the products of the forward and backward in different orders; each sum
#: of K terms is then within K u of the sum of its terms' magnitudes (Higham
#: 3.5), K <= 18 here, and lr x that sum is at most about the player's largest
#: change (an entry whose terms do not cancel). An entry whose terms cancel
#: (D's output bias: +-0.5 per example, summing to ~1e-3 of that) makes a small
#: change with the same absolute error, so the scale is the player's, not the
#: entry's. x 8 products deep, x 10 margin: float32 1e-4, float64 3e-13.
CHANGE_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 3e-13}


def assert_same_change(got, want, before, steps, scale=None, rtol=None, what="", norm=False,
                       moved=True):
    """``got`` and ``want`` (parameters after ``steps`` updates from ``before``
    on two backends) made the same change: |dgot - dwant| <= rtol scale +
    storage elementwise, ``scale`` the player's largest change (default this
    tensor's), storage = steps ulp(p): each step rounds p + v to the
    parameter's dtype, and two p + v a hair apart can round one ulp apart.
    ``norm``: in Euclidean norm, rtol ||dwant|| + ||storage||. ``moved``:
    ``want`` must differ from ``before`` somewhere. (The values
    themselves would hide the change: at the paper's init G's weights move
    ~3e-8 per step, far under an atol of 1e-6.)"""
    before = np.asarray(before)
    rtol = CHANGE_RTOL[before.dtype] if rtol is None else rtol
    b64 = before.astype(np.float64)
    dw, dg = np.asarray(want, np.float64) - b64, np.asarray(got, np.float64) - b64
    scale = np.abs(dw).max() if scale is None else scale
    mag = np.maximum(np.maximum(np.abs(b64), np.abs(np.asarray(want, np.float64))),
                     np.abs(np.asarray(got, np.float64))).astype(before.dtype)
    storage = steps * np.spacing(mag).astype(np.float64)
    assert not moved or np.any(dw != 0), f"{what}: did not change"
    if norm:
        err, tol = np.linalg.norm(dg - dw), rtol * np.linalg.norm(dw) + np.linalg.norm(storage)
        assert err <= tol, (f"{what}: change differs by {err:.3g} in norm (> {tol:.3g}; "
                            f"|change| {np.linalg.norm(dw):.3g})")
    else:
        err, tol = np.abs(dg - dw), rtol * scale + storage
        i = np.unravel_index(np.argmax(err - tol), err.shape)
        assert np.all(err <= tol), (f"{what}: change {dg[i]:.6g} vs {dw[i]:.6g} at {i} "
                                    f"(tolerance {tol[i]:.3g}; scale {scale:.3g})")


def assert_same_changes(t, got, want, before, steps, rtol=None):
    """assert_same_change for each parameter of trainer ``t``'s G then D
    (host lists in that order), each against its player's largest change."""
    n_g = len(t.G.parameters())
    names = [f"G.{n}" for n, _ in t.G.named_parameters()] + [f"D.{n}" for n, _ in t.D.named_parameters()]
    scales = [max(np.abs(w.astype(np.float64) - b).max() for w, b in zip(want[sl], before[sl]))
              for sl in (slice(0, n_g), slice(n_g, None))]
    for i, (n, a, b, b0) in enumerate(zip(names, got, want, before)):
        assert_same_change(a, b, b0, steps, scale=scales[i >= n_g], rtol=rtol, what=n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(TRAINERS))
def test_trainer_steps_on_device_equal_numpy(kind, dtype):
    """Two steps on each backend from the same init, masks and z: every
    parameter's change, and the moving average's, agree (assert_same_change)."""
    with numpy_backend():
        before = _host_params(_make(TRAINERS[kind], dtype))
        ema_before = [np.array(a, copy=True) for a in _make(TRAINERS[kind], dtype).emas[0.9].avg]
        ref, ref_stats = _train(TRAINERS[kind], 2, dtype)
    rtol = CHANGE_RTOL[np.dtype(dtype)]
    with using(strict, "strict"):
        t, stats = _train(TRAINERS[kind], 2, dtype)
        assert all(isinstance(p.data, DeviceArray) for p in t.G.parameters() + t.D.parameters())
        for s, rs in zip(stats, ref_stats):
            assert s.keys() == rs.keys()
            for k in s:                                    # losses ~0.7, D(x) ~0.5
                assert s[k] == pytest.approx(rs[k], rel=rtol, abs=rtol), k
        assert_same_changes(t, _host_params(t), _host_params(ref), before, steps=2)
        n_g = len(ref.G.parameters())
        g_scale = max(np.abs(a.astype(np.float64) - b).max()
                      for a, b in zip(_host_params(ref)[:n_g], before[:n_g]))
        for avg, ref_avg, a0 in zip(t.emas[0.9].avg, ref.emas[0.9].avg, ema_before):
            assert_same_change(host(avg), ref_avg, a0, steps=2, scale=g_scale, moved=False,
                               what="EMA of G")
        samples = t.generate(5)
        assert type(samples) is np.ndarray and samples.shape == (5, 12)


def test_assert_same_change_catches_a_wrong_change():
    """Not vacuous: G's first-layer weights change by ~3e-8 in two steps, far
    under the 1e-6 an absolute tolerance on the values allowed; a change 20 %
    off, or none, fails."""
    with numpy_backend():
        t0 = _make(TRAINERS["simultaneous (the paper's code)"])
        before = _host_params(t0)
        t, _ = _train(TRAINERS["simultaneous (the paper's code)"], 2)
    after = _host_params(t)
    d = after[0].astype(np.float64) - before[0]
    assert 0 < np.abs(d).max() < 1e-7
    assert_same_changes(t, after, after, before, steps=2)
    wrong = (before[0] + 1.2 * d).astype(np.float32)
    with pytest.raises(AssertionError, match="change"):
        assert_same_changes(t, [wrong] + after[1:], after, before, steps=2)
    with pytest.raises(AssertionError, match="change"):
        assert_same_changes(t, [before[0]] + after[1:], after, before, steps=2)
    np.testing.assert_allclose(wrong, after[0], rtol=1e-5, atol=1e-6)     # what used to pass


@pytest.mark.parametrize("direction", ["device -> host", "host -> device"])
def test_checkpoint_moves_between_backends(tmp_path, direction):
    """Two steps on one backend, checkpoint, two more on the other: equal to four
    uninterrupted steps (dropout masks and z come from host generators)."""
    first, second = ((strict, "strict"), (np, "numpy"))[::1 if direction == "device -> host" else -1]
    path = str(tmp_path / "ck.npz")
    with numpy_backend():
        before = _host_params(make_trainer(simultaneous=True))
        ref, _ = _train(TRAINERS["simultaneous (the paper's code)"], 4)
    with using(*first):
        t, _ = _train(TRAINERS["simultaneous (the paper's code)"], 2)
        state = t.state_dict()
        assert not device_leaves(state), "trainer state_dict must hold host arrays only"
        checkpoint.save(path, state, {"run": "x"})
    with using(*second):
        t2 = make_trainer(simultaneous=True)
        for p in t2.G.parameters() + t2.D.parameters():
            p.data = p.data * 0                              # the checkpoint must restore them
        t2.load_state_dict(checkpoint.load(path, {"run": "x"})["state"])
        for i in (2, 3):
            t2.step(t2.data[8 * i:8 * (i + 1)])
        assert_same_changes(t2, _host_params(t2), _host_params(ref), before, steps=4)


# ----------------------------------------------------------------------------- Parzen

PARZEN = {
    "float64, scalar sigma": dict(dtype=np.float64, sigma=0.3, block_size=None),
    "float64, sigma grid, small blocks": dict(dtype=np.float64, sigma=np.array([0.1, 0.3, 1.0]),
                                              block_size=(7, 11)),
    "float32, sigma grid": dict(dtype=np.float32, sigma=np.array([0.2, 0.5]), block_size=(16, 9)),
}


@pytest.mark.parametrize("case", list(PARZEN))
def test_parzen_on_device_equals_numpy(case):
    """Tolerances: the NumPy path and the device run the same float64/32
    arithmetic (sums of D = 6 terms in another order: ~1e-15 of values ~10);
    against the compiled kernel, float32 squared distances are off by
    <= (D + 3) u32 (|x| + |s|)^2 <= 9 x 6e-8 x 24 = 1.3e-5, divided by
    2 sigma^2 >= 0.08: 1.6e-4 in the worst case for each of the two, so atol
    3.5e-4; float64: the same analysis with u64 (1e-9 holds)."""
    c = PARZEN[case]
    rng = np.random.default_rng(0)
    x, s = rng.uniform(0, 1, (37, 6)).astype(c["dtype"]), rng.uniform(0, 1, (50, 6)).astype(c["dtype"])
    with numpy_backend():
        ref_kernel = parzen.log_likelihood(x, s, c["sigma"], c["block_size"])
        ref_numpy = parzen.log_likelihood(x, s, c["sigma"], c["block_size"], use_kernel=False)
    with using(strict, "strict"):
        for xs, ss in ((x, s), (strict.asarray(x), strict.asarray(s))):      # host or device inputs
            ll = parzen.log_likelihood(xs, ss, c["sigma"], c["block_size"])
            assert_close(ll, ref_numpy, rtol=1e-12, atol=1e-9, what="vs the NumPy path")
            assert_close(ll, ref_kernel, rtol=1e-5 if c["dtype"] == np.float32 else 1e-10,
                         atol=3.5e-4 if c["dtype"] == np.float32 else 1e-9, what="vs the compiled kernel")
        with pytest.raises(RuntimeError, match="not available"):
            parzen.log_likelihood(x, s, 0.3, use_kernel=True)


def test_parzen_protocol_on_device(strict_backend):
    rng = np.random.default_rng(1)
    samples, test_x, valid_x = (rng.uniform(0, 1, (n, 5)) for n in (60, 30, 20))
    r = parzen.evaluate(strict.asarray(samples), strict.asarray(test_x), valid_x, progress=False)
    with numpy_backend():
        ref = parzen.evaluate(samples, test_x, valid_x, progress=False)
    assert r["sigma"] == ref["sigma"]
    assert r["ll_mean"] == pytest.approx(ref["ll_mean"], rel=1e-10)
    assert r["ll_se"] == pytest.approx(ref["ll_se"], rel=1e-8)
    assert type(r["valid_ll"]) is np.ndarray
    mean, se = parzen.mean_and_se(strict.asarray(np.array([1.0, 2.0, 3.0])))
    assert (mean, se) == pytest.approx((2.0, 1 / np.sqrt(3)))


# ----------------------------------------------------------------------------- choosing the backend

def _no_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)       # import cupy -> ImportError


def _fake_cupy(monkeypatch, count):
    def get_count():
        if isinstance(count, Exception):
            raise count
        return count
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_count))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


def test_use_cupy_without_cupy_says_how_to_install(monkeypatch):
    _no_cupy(monkeypatch)
    with pytest.raises(RuntimeError, match=r"needs CuPy: pip install 'npgan\[cuda12\]'"):
        npgan.use("cupy")
    assert backend.xp is np and backend.name == "numpy"      # unchanged


@pytest.mark.parametrize("count,message", [
    (0, "no CUDA device is visible"),
    (RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"),
     "no CUDA device is usable: cudaErrorNoDevice"),
])
def test_use_cupy_without_a_device_says_so(monkeypatch, count, message):
    _fake_cupy(monkeypatch, count)
    with pytest.raises(RuntimeError, match=message):
        npgan.use("cupy")
    assert backend.xp is np


def test_use_cupy_with_a_device_selects_it(monkeypatch):
    fake = _fake_cupy(monkeypatch, 1)
    try:
        assert npgan.use("cupy") is fake and backend.xp is fake and backend.name == "cupy"
    finally:
        npgan.use("numpy")
    assert backend.xp is np and backend.name == "numpy"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        npgan.use("torch")


def _import_with(value):
    env = dict(os.environ, NPGAN_BACKEND=value, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", "import npgan; print(npgan.backend.name)"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_npgan_backend_environment_variable():
    assert _import_with("numpy").stdout.strip() == "numpy"
    r = _import_with("cupy")
    if r.returncode == 0:                     # CuPy and a device are there
        assert r.stdout.strip() == "cupy"
    else:                                     # a clear error at import, not a late crash
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("RuntimeError:"), r.stderr
        assert "npgan[cuda12]" in last or "no CUDA device" in last, last
    r = _import_with("gpu")
    assert r.returncode != 0 and "unknown backend 'gpu'" in r.stderr


def test_cuda_kernels_module_needs_cupy_and_is_not_imported_for_numpy(monkeypatch):
    assert _kernels.cuda_kernels() is None                  # NumPy backend: never imported
    _no_cupy(monkeypatch)
    monkeypatch.delitem(sys.modules, "npgan._kernels.cuda", raising=False)
    with pytest.raises(ImportError, match="needs CuPy"):
        import npgan._kernels.cuda  # noqa: F401


def test_to_numpy_and_asarray():
    a = np.arange(3.0)
    assert backend.to_numpy(a) is a
    assert backend.asarray(a) is a                                    # NumPy: no copy
    assert backend.to_numpy([1.0, 2.0]).tolist() == [1.0, 2.0]
    with using(strict, "strict"):
        d = backend.asarray(a, dtype=np.float32)
        assert isinstance(d, DeviceArray) and d.dtype == np.float32
        back = backend.to_numpy(d)
        assert type(back) is np.ndarray and back.tolist() == [0.0, 1.0, 2.0]


def test_pyproject_has_the_cuda12_extra_and_the_gpu_marker():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        meta = tomllib.load(f)
    extra = meta["project"]["optional-dependencies"]["cuda12"]
    assert any(req.replace(" ", "").startswith("cupy-cuda12x>=13") for req in extra), extra
    markers = meta["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("gpu:") for m in markers), markers


# ----------------------------------------------------------------------------- the CUDA kernels, emulated

@pytest.fixture
def emulated_cupy(monkeypatch):
    """``npgan.use("cupy")`` with ``tests/cupy_emulator.fake_cupy()``: strict device
    arrays, and npgan/_kernels/cuda.py's kernel sources compiled as C++ for the CPU."""
    import cupy_emulator
    if cupy_emulator.compiler() is None:
        pytest.skip("no C++ compiler to emulate the CuPy kernels")
    fake = cupy_emulator.fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.delitem(sys.modules, "npgan._kernels.cuda", raising=False)
    monkeypatch.delitem(_kernels._cache, "cuda", raising=False)
    monkeypatch.setattr(settings, "_values", dict(settings._values, kernels=True))
    prev = backend.set_module(np, "numpy")
    npgan.use("cupy")
    try:
        yield fake
    finally:
        backend.set_module(*prev)
        _kernels._cache.pop("cuda", None)
        sys.modules.pop("npgan._kernels.cuda", None)


ACTIVATIONS = ["relu", "sigmoid", "softplus", "log_sigmoid"]
EXTREMES = np.array([0.0, -0.0, 1e-30, -15.0, 15.0, -40.0, 40.0, -1e3, 1e3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_activation_kernels_emulated(dtype, emulated_cupy):
    from npgan._kernels import reference as ref
    cu = _kernels.cuda_kernels()
    assert cu is not None and cu.cupy is emulated_cupy
    x = np.concatenate([4 * R(50), EXTREMES]).astype(dtype)[::2]     # a strided view too
    g = R(x.size, seed=1).astype(dtype)
    xd, gd = strict.asarray(x), strict.asarray(g)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    with numpy_backend():
        refs = {n: (getattr(ref, f"{n}_forward")(x),
                    getattr(ref, f"{n}_backward")(g, np.maximum(x, 0) if n == "relu" else x))
                for n in ACTIVATIONS}
    for n in ACTIVATIONS:
        fwd = getattr(_kernels, f"{n}_forward")(xd)
        bwd = getattr(_kernels, f"{n}_backward")(gd, strict.maximum(xd, 0) if n == "relu" else xd)
        assert_close(fwd, refs[n][0], rtol=rtol, atol=0, what=f"{n} forward")
        assert_close(bwd, refs[n][1], rtol=rtol, atol=0, what=f"{n} backward")
    assert getattr(_kernels, "sigmoid_forward")(strict.asarray(dtype(0.5))).shape == ()


def test_cuda_maxout_kernels_emulated(emulated_cupy):
    from npgan._kernels import reference as ref
    for x, pieces in ((R(7, 12), 3), (np.random.default_rng(0).integers(0, 3, (4, 5, 6)).astype(np.float32), 2),
                      (R(3, 4), 1), (np.zeros((0, 6)), 2)):
        y, arg = _kernels.maxout_forward(strict.asarray(x), pieces)
        g = R(*y.shape, seed=2).astype(x.dtype)
        gx = _kernels.maxout_backward(strict.asarray(g), arg, pieces)
        with numpy_backend():
            ry, rarg = ref.maxout_forward(x, pieces)
            rgx = ref.maxout_backward(g, rarg, pieces)
        assert_close(y, ry, rtol=0, atol=0)
        assert_close(arg, rarg, rtol=0, atol=0)
        assert_close(gx, rgx, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_parzen_kernel_emulated(dtype, emulated_cupy):
    rng = np.random.default_rng(0)
    x, s = rng.uniform(0, 1, (23, 5)).astype(dtype), rng.uniform(0, 1, (31, 5)).astype(dtype)
    sig = np.array([0.1, 0.4])
    with numpy_backend():
        want = parzen.log_likelihood(x, s, sig, (6, 7), use_kernel=False)
    got = parzen.log_likelihood(x, s, sig, (6, 7), use_kernel=True)      # the CUDA path
    assert_close(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4 if dtype == np.float32 else 1e-10)
    one = parzen.log_likelihood(x, s, 0.4)
    assert_close(one, want[1], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4 if dtype == np.float32 else 1e-10)


def test_available_reports_the_cuda_kernels(emulated_cupy):
    assert _kernels.available()["cuda"] is True
    with numpy_backend():
        assert "cuda" not in _kernels.available()
