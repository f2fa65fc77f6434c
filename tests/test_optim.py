"""optim: update rules against hand-computed steps (and torch), state, schedules."""
import math

import numpy as np
import pytest

import npgan
from npgan import nn, optim

G = [np.array([1.0, 2.0]), np.array([-1.0, 0.5]), np.array([0.5, 0.5])]
EPS = np.finfo(np.float64).eps


def tol(steps, ops):
    """Relative rounding bound after ``steps`` updates of ``ops`` float64 operations
    each (every one rounds by <= eps/2, with or without FMA), with 2x spare."""
    return steps * ops * EPS


def run(opt_cls, grads, p0=(1.0, -2.0), dtype=np.float64, lr_per_step=None, **kw):
    p = nn.Parameter(np.array(p0, dtype=dtype))
    opt = opt_cls([p], **kw)
    out = []
    for i, g in enumerate(grads):
        if lr_per_step is not None:
            opt.lr = lr_per_step[i]
        p.grad = np.asarray(g, dtype=dtype)
        opt.step()
        out.append(p.data.copy())
    return out, opt


def test_sgd_momentum_three_steps_by_hand():
    # v <- .5 v - .1 g; p <- p + v, from p = (1, -2)
    # v1 = (-.1, -.2)      p1 = (.9, -2.2)
    # v2 = (.05, -.15)     p2 = (.95, -2.35)
    # v3 = (-.025, -.125)  p3 = (.925, -2.475)
    ps, opt = run(optim.SGD, G, lr=0.1, momentum=0.5)
    # v = mu v - lr g, p = p + v: 4 roundings a step; |v| <= |p| here, so relative to p
    np.testing.assert_allclose(ps, [[0.9, -2.2], [0.95, -2.35], [0.925, -2.475]], rtol=tol(3, 4))
    # v3 = -.025 is a difference of .05 and .025-sized terms: its bound is relative to
    # those terms (|mu v| + |lr g| <= .3), not to v itself
    np.testing.assert_allclose(opt.velocity[0], [-0.025, -0.125], rtol=0, atol=0.3 * tol(3, 4))
    assert opt.steps == 3


def test_sgd_nesterov_three_steps_by_hand():
    # v <- .5 v - .1 g; p <- p + .5 v - .1 g
    # p1 = (1 - .05 - .1, -2 - .1 - .2)           = (.85, -2.3)
    # p2 = (.85 + .025 + .1, -2.3 - .075 - .05)   = (.975, -2.425)
    # p3 = (.975 - .0125 - .05, -2.425 - .0625 - .05) = (.9125, -2.5375)
    ps, _ = run(optim.SGD, G, lr=0.1, momentum=0.5, nesterov=True)
    np.testing.assert_allclose(ps, [[0.85, -2.3], [0.975, -2.425], [0.9125, -2.5375]],
                               rtol=tol(3, 6))


def test_sgd_plain_and_lr_change_keeps_past_gradients_lr():
    ps, _ = run(optim.SGD, G[:1], lr=0.1)
    np.testing.assert_allclose(ps[0], [0.9, -2.2], rtol=tol(1, 4))
    # pylearn2 rule: v2 = .5 * (-.1 g1) - .2 g2 (g1 keeps lr .1)
    ps, _ = run(optim.SGD, G[:2], lr=0.1, momentum=0.5, lr_per_step=[0.1, 0.2])
    np.testing.assert_allclose(ps[1], [0.9 + (-0.05 + 0.2), -2.2 + (-0.1 - 0.1)], rtol=tol(2, 4))


def test_sgd_matches_torch_at_constant_lr():
    torch = pytest.importorskip("torch")
    for nesterov in (False, True):
        ps, _ = run(optim.SGD, G, lr=0.1, momentum=0.5, nesterov=nesterov)
        t = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([t], lr=0.1, momentum=0.5, nesterov=nesterov)
        for g, p in zip(G, ps):
            t.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
            np.testing.assert_allclose(t.detach().numpy(), p, rtol=2 * tol(3, 6))   # both round


def _adam_by_hand(p, grads, lr, b1, b2, eps):
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        out.append(p)
    return out


def test_adam_first_step_is_lr_times_sign():
    # step 1: mhat = g, vhat = g^2, so p moves by lr * g / (|g| + eps)
    ps, _ = run(optim.Adam, G[:1], lr=0.1)
    np.testing.assert_allclose(ps[0], [1.0 - 0.1 * 1 / (1 + 1e-8), -2.0 - 0.1 * 2 / (2 + 1e-8)],
                               rtol=tol(1, 12))


def test_adam_three_steps_by_hand():
    # step 2 for the first coordinate, written out:
    #   m = .9*.1*1 + .1*(-1) = -.01          mhat = -.01 / (1 - .81) = -.052631...
    #   v = .999*.001*1 + .001*1 = .001999    vhat = .001999 / (1 - .998001) = 1
    #   p2 = p1 - .1 * (-.052631...) / (1 + 1e-8)
    ps, _ = run(optim.Adam, G, lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    p1 = 1.0 - 0.1 / (1 + 1e-8)
    # Both sides do the same correctly rounded IEEE operations (+ - * / sqrt: the
    # same bits on every machine), the bias corrections in the same Python floats,
    # associated differently: ~12 roundings a step, of the update (<= lr .1) or of
    # p (|p| >= .9), so relative to p
    np.testing.assert_allclose(ps[1][0], p1 + 0.1 * (0.01 / 0.19) / (1 + 1e-8), rtol=2 * tol(2, 12))
    ref = _adam_by_hand(np.array([1.0, -2.0]), G, 0.1, 0.9, 0.999, 1e-8)
    np.testing.assert_allclose(ps, ref, rtol=2 * tol(3, 12))


def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]
    p0 = rng.standard_normal((3, 4))
    ps, _ = run(optim.Adam, grads, p0=p0, lr=2e-3, betas=(0.5, 0.99), eps=1e-6)
    t = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.Adam([t], lr=2e-3, betas=(0.5, 0.99), eps=1e-6)
    for g, p in zip(grads, ps):
        t.grad = torch.tensor(g)
        opt.step()
        # two implementations, each within 5 steps x 12 roundings of |p| (lr 2e-3 << |p|)
        np.testing.assert_allclose(t.detach().numpy(), p, rtol=0,
                                   atol=2 * tol(5, 12) * np.abs(p).max())


def test_float32_parameters_stay_float32():
    for cls, kw in ((optim.SGD, {"lr": 0.1, "momentum": 0.5}), (optim.Adam, {})):
        ps, opt = run(cls, G, dtype=np.float32, **kw)
        assert ps[-1].dtype == np.float32


def test_parameters_without_grad_are_skipped():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    for opt in (optim.SGD([a, b], lr=0.1, momentum=0.9), optim.Adam([a, b])):
        a.grad, b.grad = np.ones(2), None
        opt.step()
        np.testing.assert_array_equal(b.data, np.ones(2))
        assert not np.array_equal(a.data, np.ones(2))
        a.data[:] = 1


def test_zero_grad():
    a = nn.Parameter(np.ones(2))
    a.grad = np.ones(2)
    opt = optim.SGD([a], lr=0.1)
    opt.zero_grad()
    assert a.grad is None


def test_constructor_refusals():
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="require"):
        optim.SGD([nn.Tensor(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError):
        optim.SGD([nn.Parameter(np.ones(2))], lr=-1)
    with pytest.raises(ValueError):
        optim.SGD([nn.Parameter(np.ones(2))], lr=0.1, momentum=1.0)


@pytest.mark.parametrize("cls,kw", [(optim.SGD, {"lr": 0.05, "momentum": 0.7, "nesterov": True}),
                                    (optim.Adam, {"lr": 0.01, "betas": (0.5, 0.9)})])
def test_state_dict_round_trip_continues_identically(cls, kw):
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal((2, 3)), rng.standard_normal(3)] for _ in range(5)]
    a = [nn.Parameter(rng.standard_normal((2, 3))), nn.Parameter(rng.standard_normal(3))]
    opt_a = cls(a, **kw)
    for gs in grads[:2]:
        for p, g in zip(a, gs):
            p.grad = g
        opt_a.step()
    state = opt_a.state_dict()
    b = [nn.Parameter(p.data.copy()) for p in a]
    opt_b = cls(b, lr=123.0)                       # hyper-parameters come from the state
    opt_b.load_state_dict(state)
    assert opt_b.steps == 2 and opt_b.lr == kw["lr"]
    for name, arrays in opt_a._state_arrays().items():
        for x in state[name]:
            x[...] = 99.0                          # the state is a copy
    for gs in grads[2:]:
        for p, q, g in zip(a, b, gs):
            p.grad, q.grad = g, g.copy()
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_refuses_mismatch():
    p = nn.Parameter(np.ones((2, 3)))
    opt = optim.SGD([p], lr=0.1, momentum=0.5)
    p.grad = np.ones((2, 3))
    opt.step()
    state = opt.state_dict()
    q = nn.Parameter(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        optim.SGD([q], lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="1 entries"):
        optim.SGD([q, p], lr=0.1).load_state_dict(state)


def test_hyper_parameters_are_checked_by_name():
    p = [nn.Parameter(np.ones(2))]
    for kw, name in [({"lr": float("nan")}, "lr"), ({"lr": -1e-3}, "lr"), ({"lr": "0.1"}, "lr"),
                     ({"lr": 0.1, "momentum": -0.1}, "momentum"),
                     ({"lr": 0.1, "nesterov": 1}, "nesterov")]:
        with pytest.raises(ValueError, match=name):
            optim.SGD(p, **kw)
    for kw, name in [({"lr": -1.0}, "lr"), ({"lr": float("inf")}, "lr"),
                     ({"betas": (1.0, 0.9)}, r"betas\[0\]"), ({"betas": (0.9, -0.1)}, r"betas\[1\]"),
                     ({"betas": (0.9,)}, "pair"), ({"eps": 0.0}, "eps"), ({"eps": float("nan")}, "eps")]:
        with pytest.raises(ValueError, match=name):
            optim.Adam(p, **kw)


def _stepped(cls, **kw):
    p = [nn.Parameter(np.ones((2, 3))), nn.Parameter(np.zeros(3))]
    opt = cls(p, **kw)
    for q in p:
        q.grad = np.full(q.shape, 0.5)
    opt.step()
    return opt


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], list):
            for x, y in zip(a[k], b[k]):
                assert (x is None and y is None) or np.array_equal(x, y)
        else:
            assert a[k] == b[k]


@pytest.mark.parametrize("edit,match", [
    (lambda s: s["hyper"].update(lr=-1), "lr must be >= 0"),
    (lambda s: s["hyper"].update(momentum=1.0), "momentum must be < 1"),
    (lambda s: s["hyper"].update(foo=3), "hyper-parameters"),
    (lambda s: s["hyper"].pop("nesterov"), "hyper-parameters"),
    (lambda s: s.update(hyper=[1]), "'hyper' must be a dict"),
    (lambda s: s.update(steps=-2), "steps"),
    (lambda s: s.update(steps=1.5), "steps"),
    (lambda s: s.update(m=[None, None]), "keys"),
    (lambda s: s["velocity"].pop(), "1 entries"),
    (lambda s: s["velocity"].__setitem__(1, np.zeros(4)), r"\(4,\)"),
    (lambda s: s["velocity"].__setitem__(0, np.zeros((2, 3), int)), "float array"),
    (lambda s: s["velocity"][0].__setitem__((0, 0), np.nan), "NaN or inf"),
    (lambda s: s["velocity"][1].__setitem__(0, 1e300), "NaN or inf"),     # overflows float32
])
def test_sgd_load_state_dict_refuses_and_changes_nothing(edit, match):
    src = _stepped(optim.SGD, lr=0.05, momentum=0.7)
    opt = _stepped(optim.SGD, lr=0.2, momentum=0.1)
    for q in opt.params:
        q.data = q.data.astype(np.float32)
    before = opt.state_dict()
    state = src.state_dict()
    edit(state)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    _same(opt.state_dict(), before)


def test_adam_load_state_dict_refuses_sgd_state_and_bad_moments():
    adam = _stepped(optim.Adam, lr=0.01)
    before = adam.state_dict()
    with pytest.raises(ValueError, match=r"Adam state has keys .*velocity"):
        adam.load_state_dict(_stepped(optim.SGD, lr=0.1).state_dict())
    s = adam.state_dict()
    s["v"][0][0, 0] = -1.0
    with pytest.raises(ValueError, match="negative"):
        adam.load_state_dict(s)
    s = adam.state_dict()
    s["hyper"]["betas"] = [0.9, 1.5]
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        adam.load_state_dict(s)
    _same(adam.state_dict(), before)
    s = adam.state_dict()
    s["hyper"]["betas"] = [0.5, 0.9]                 # as JSON gives it back: a list
    adam.load_state_dict(s)
    assert adam.betas == (0.5, 0.9)


# ----------------------------------------------------------------------------- schedules

@pytest.mark.parametrize("t", [0, 1, 2, 1000, 123_457, 2_000_000])
def test_exponential_decay_values(t):
    assert optim.ExponentialDecay()(t) == pytest.approx(0.1 / 1.000004 ** t, rel=1e-12)


def test_exponential_decay_floor():
    d = optim.ExponentialDecay()
    t_floor = math.log(0.1 / 1e-6) / math.log(1.000004)       # ~2.878e6 updates
    assert d(int(t_floor) - 1000) > 1e-6
    assert d(int(t_floor) + 1000) == 1e-6
    assert d(10 ** 9) == 1e-6
    assert optim.ExponentialDecay(lr0=1.0, factor=2.0, floor=0.0)(3) == pytest.approx(0.125, rel=1e-14)
    with pytest.raises(ValueError):
        optim.ExponentialDecay(factor=0.9)


def test_exponential_decay_tail():
    d = optim.ExponentialDecay(lr0=1.0, factor=2.0, floor=0.0, tail_from=3, tail_factor=3.0)
    assert [d(t) for t in (0, 3, 4, 6)] == pytest.approx([1.0, 1 / 8, 1 / 24, 1 / 216], rel=1e-14)
    held = optim.ExponentialDecay(0.1, 1.000004, 1e-6, tail_from=1000, tail_factor=1.0)
    assert held(5000) == held(1000) == pytest.approx(0.1 / 1.000004 ** 1000, rel=1e-12)
    for bad in (dict(tail_factor=0.5, tail_from=1), dict(tail_from=-1), dict(tail_from=1.5)):
        with pytest.raises(ValueError):
            optim.ExponentialDecay(**bad)


def test_linear_ramp_paper_momentum():
    r = optim.LinearRamp()
    for e in (0, 0.5, 1):
        assert r(e) == pytest.approx(0.5, abs=1e-15)
    assert r(125.5) == pytest.approx(0.6, abs=1e-15)
    for e in (250, 251, 10_000):
        assert r(e) == pytest.approx(0.7, abs=1e-15)
    vals = [r(e) for e in np.linspace(1, 250, 50)]
    assert all(b > a for a, b in zip(vals, vals[1:]))
    assert r(1 + 249 / 4) == pytest.approx(0.55, abs=1e-15)


def test_linear_ramp_degenerate_and_refusal():
    r = optim.LinearRamp(0.1, 0.9, start_epoch=5, end_epoch=5)
    assert r(4) == 0.1 and r(5) == 0.9
    with pytest.raises(ValueError):
        optim.LinearRamp(start_epoch=3, end_epoch=2)


# ----------------------------------------------------------------------------- RMSprop
def test_rmsprop_three_steps_by_hand():
    # v <- .9 v + .1 g^2; p <- p - .01 g / (sqrt(v) + eps), eps tiny
    # coordinate 0: g = 1, -1, .5
    #   v1 = .1              p1 = 1 - .01/sqrt(.1)
    #   v2 = .09 + .1 = .19  p2 = p1 + .01/sqrt(.19)
    #   v3 = .171 + .025     p3 = p2 - .005/sqrt(.196)
    ps, opt = run(optim.RMSprop, G, lr=0.01, alpha=0.9, eps=1e-12)
    p1 = 1 - 0.01 / math.sqrt(0.1)
    p2 = p1 + 0.01 / math.sqrt(0.19)
    p3 = p2 - 0.005 / math.sqrt(0.196)
    np.testing.assert_allclose([q[0] for q in ps], [p1, p2, p3], rtol=1e-12)
    # the first step is -lr sign(g) / sqrt(1 - alpha) (+ eps) in every coordinate
    np.testing.assert_allclose(ps[0][1], -2.0 - 0.01 / math.sqrt(0.1), rtol=1e-12)
    np.testing.assert_allclose(opt.v[0], [0.196, 0.9 * (0.9 * 0.4 + 0.025) + 0.025], rtol=1e-12)
    assert opt.steps == 3


def test_rmsprop_closed_form_constant_gradient():
    # constant g: v_t = (1 - alpha^t) g^2, so p_t = p0 - lr sum_s sign(g) / sqrt(1 - alpha^s)
    alpha, lr, t = 0.99, 1e-3, 50
    ps, _ = run(optim.RMSprop, [[0.3, -2.0]] * t, lr=lr, alpha=alpha, eps=1e-30)
    steps = sum(1 / math.sqrt(1 - alpha ** s) for s in range(1, t + 1))
    np.testing.assert_allclose(ps[-1], [1.0 - lr * steps, -2.0 + lr * steps], rtol=1e-10)


def test_rmsprop_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(3) for _ in range(6)]
    ps, _ = run(optim.RMSprop, grads, p0=(0.5, -1.0, 2.0), lr=5e-3, alpha=0.95, eps=1e-6)
    t = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.RMSprop([t], lr=5e-3, alpha=0.95, eps=1e-6)
    for g in grads:
        t.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(ps[-1], t.detach().numpy(), rtol=1e-12)


def test_rmsprop_state_dict_round_trip_and_refusals():
    test_state_dict_round_trip_continues_identically(optim.RMSprop, {"lr": 0.01, "alpha": 0.9})
    opt = _stepped(optim.RMSprop, lr=0.01)
    before = opt.state_dict()
    s = opt.state_dict()
    s["v"][0][0, 0] = -1.0
    with pytest.raises(ValueError, match="negative"):
        opt.load_state_dict(s)
    with pytest.raises(ValueError, match="RMSprop state has keys"):
        opt.load_state_dict(_stepped(optim.Adam, lr=0.1).state_dict())
    _same(opt.state_dict(), before)
    for kw, name in [({"lr": -1.0}, "lr"), ({"alpha": 1.0}, "alpha"), ({"eps": 0.0}, "eps")]:
        with pytest.raises(ValueError, match=name):
            optim.RMSprop([nn.Parameter(np.ones(2))], **kw)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.5),
                                  lambda ps: optim.Adam(ps, lr=0.1),
                                  lambda ps: optim.RMSprop(ps, lr=0.1)])
def test_step_after_backward_with_create_graph_uses_the_gradients_value(make):
    """backward(create_graph=True) leaves .grad a Tensor with history; a step takes the
    same update as from the plain backward's array."""
    x0 = np.array([[0.5, -1.0, 2.0]])
    a, b = npgan.Tensor(x0.copy(), requires_grad=True), npgan.Tensor(x0.copy(), requires_grad=True)
    oa, ob = make([a]), make([b])
    ((a * a * a).sum()).backward(create_graph=True)
    ((b * b * b).sum()).backward()
    assert isinstance(a.grad, npgan.Tensor) and not isinstance(b.grad, npgan.Tensor)
    oa.step()
    ob.step()
    np.testing.assert_allclose(a.data, b.data, rtol=0, atol=0)
    assert not np.allclose(a.data, x0)
