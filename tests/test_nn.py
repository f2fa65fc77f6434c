"""nn: layers pass gradcheck; Module bookkeeping; state_dict; init; dropout modes."""
import re

import numpy as np
import pytest

from npgan import Tensor, gradcheck, nn

from conftest import with_params


def R(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_gradcheck_linear_layer():
    lin = nn.Linear(3, 4, init="normal", std=0.5, rng=np.random.default_rng(0)).to("float64")
    lin.bias.data = R(4, seed=3)
    fn, params = with_params(lin, lin)
    assert len(params) == 2
    assert gradcheck(fn, R(5, 3, seed=1), *params)


def test_gradcheck_linear_without_bias():
    lin = nn.Linear(3, 2, bias=False, init="xavier", rng=np.random.default_rng(0)).to("float64")
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    fn, params = with_params(lin, lin)
    assert gradcheck(fn, R(4, 3, seed=1), *params)


def test_gradcheck_maxout_layer():
    m = nn.Maxout(4, units=3, pieces=2, init="normal", std=1.0, rng=np.random.default_rng(0))
    m.to("float64")
    fn, params = with_params(m, m)
    assert gradcheck(fn, R(5, 4, seed=1), *params)


def test_gradcheck_sequential():
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Linear(3, 6, init="normal", std=1.0, rng=rng), nn.Tanh(),
                        nn.Maxout(6, 2, 2, init="normal", std=1.0, rng=rng), nn.Sigmoid(),
                        nn.Linear(2, 3, init="normal", std=1.0, rng=rng), nn.ReLU()).to("float64")
    fn, params = with_params(net, net)
    x = R(4, 3, seed=1)
    pre = Tensor(x)
    for m in list(net)[:-1]:
        pre = m(pre)
    assert np.min(np.abs(pre.data)) > 1e-4            # clear of the final ReLU's kink
    assert gradcheck(fn, x, *params)


def test_gradcheck_dropout_layer_with_fixed_mask():
    d = nn.Dropout(0.3)

    def fn(x):
        d.rng = np.random.default_rng(11)          # the same mask on every evaluation
        return d(x)
    assert gradcheck(fn, R(5, 6))


# ----------------------------------------------------------------------------- bookkeeping

class Net(nn.Module):
    def __init__(self):
        rng = np.random.default_rng(0)
        self.fc1 = nn.Linear(4, 5, rng=rng)
        self.scale = nn.Parameter(np.ones(1, np.float32))
        self.body = nn.Sequential(nn.Maxout(5, 3, 2, rng=rng), nn.Dropout(0.5, rng=1),
                                  nn.Linear(3, 2, bias=False, rng=rng))
        self.not_a_param = Tensor(np.zeros(3))
        self.number = 3

    def forward(self, x):
        return self.body(self.fc1(x) * self.scale)


def test_named_parameters_order_and_names():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "scale", "body.0.linear.weight",
                     "body.0.linear.bias", "body.2.weight"]
    params = net.parameters()
    assert [p.shape for p in params] == [(4, 5), (5,), (1,), (5, 6), (6,), (3, 2)]
    assert params[0] is net.fc1.weight and params[-1] is net.body[2].weight
    assert net.num_parameters() == 20 + 5 + 1 + 30 + 6 + 6
    assert all(p.requires_grad for p in params)
    assert len(net.body) == 3 and [type(m).__name__ for m in net.body] == ["Maxout", "Dropout", "Linear"]


def test_a_shared_layer_is_listed_once_and_stepped_once():
    """A layer used twice (tied weights): one entry per parameter, under its
    first name, in named_parameters, state_dict and modules; SGD moves it by
    -lr times the gradient summed over both uses, once."""
    from npgan import optim
    lin = nn.Linear(3, 3, rng=np.random.default_rng(0), dtype="float64")
    net = nn.Sequential(lin, nn.ReLU(), lin)
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias"]
    assert list(net.state_dict()) == ["0.weight", "0.bias"] and net.num_parameters() == 12
    assert [type(m).__name__ for m in net.modules()] == ["Sequential", "Linear", "ReLU"]
    x = R(4, 3)
    net(Tensor(x)).sum().backward()
    w0, gw = lin.weight.data.copy(), lin.weight.grad.copy()
    h = np.maximum(x @ w0 + lin.bias.data, 0)                # d/dW of sum(relu(x W + b) W + b)
    want = x.T @ (((np.ones((4, 3)) @ w0.T) * (h > 0))) + h.T @ np.ones((4, 3))
    np.testing.assert_allclose(gw, want, rtol=1e-12)
    optim.SGD(net.parameters(), lr=0.1).step()
    np.testing.assert_allclose(lin.weight.data, w0 - 0.1 * gw, rtol=1e-12)
    with pytest.raises(ValueError, match="parameter 2 is parameter 0 again"):
        optim.SGD([lin.weight, lin.bias, lin.weight], lr=0.1)


def test_zero_grad_clears_all():
    net = Net()
    net(Tensor(R(3, 4).astype(np.float32))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_train_eval_propagate_and_dropout_modes():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    x = Tensor(np.ones((2000, 5), np.float32))
    drop = net.body[1]
    assert drop(x) is x                                 # identity in eval
    net.train()
    assert all(m.training for m in net.modules())
    y = drop(x).data
    kept = np.mean(y != 0)
    assert abs(kept - 0.5) < 4 * np.sqrt(0.25 / y.size)
    assert set(np.unique(y)) == {0.0, 2.0}              # inverted scaling 1/(1-p)
    assert abs(y.mean() - 1.0) < 0.02                   # mean preserved
    net.train(False)
    assert not drop.training


def test_dropout_seeded_is_reproducible():
    x = Tensor(np.ones((6, 7)))
    a, b = nn.Dropout(0.5, rng=42), nn.Dropout(0.5, rng=np.random.default_rng(42))
    for _ in range(3):
        np.testing.assert_array_equal(a(x).data, b(x).data)
    assert not np.array_equal(a(x).data, a(x).data)     # a new mask every call


def test_dropout_refuses_bad_p():
    for p in (-0.5, 1.0):
        with pytest.raises(ValueError):
            nn.Dropout(p)


def test_linear_init_uniform_within_irange():
    lin = nn.Linear(300, 200, irange=0.05, rng=np.random.default_rng(0))
    w = lin.weight.data
    assert w.dtype == np.float32 and w.shape == (300, 200)
    assert np.all(np.abs(w) <= 0.05)
    assert w.max() > 0.049 and w.min() < -0.049
    assert abs(w.std() - 0.05 / np.sqrt(3)) < 1e-3        # U(-a, a) has std a/sqrt 3
    np.testing.assert_array_equal(lin.bias.data, np.zeros(200))
    m = nn.Maxout(10, 4, 3, rng=np.random.default_rng(0))
    assert np.all(np.abs(m.linear.weight.data) <= 0.005) and m.linear.weight.shape == (10, 12)


def test_other_inits():
    rng = np.random.default_rng(0)
    w = nn.init_weight((400, 300), "xavier", rng=rng)
    assert np.all(np.abs(w) <= np.sqrt(6 / 700))
    w = nn.init_weight((400, 300), "kaiming", rng=rng)
    assert abs(w.std() - np.sqrt(2 / 400)) < 2e-3
    w = nn.init_weight((400, 300), "normal", std=0.1, rng=rng, dtype="float64")
    assert w.dtype == np.float64 and abs(w.std() - 0.1) < 2e-3
    assert not nn.init_weight((3, 3), "zeros").any()
    with pytest.raises(ValueError, match="init"):
        nn.init_weight((3, 3), "bogus")


def test_xavier_bound_and_variance():
    """Glorot uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)). With n = 10^6
    draws, P(max |w| < a (1 - 2e-5)) = (1 - 2e-5)^n = e^-20; float32 rounding
    can move a draw by a relative 2^-24 at most. The sample variance of w has
    mean a^2/3 and relative standard deviation sqrt((1/5 - 1/9) / (1/9) / n) =
    0.00089: 6 of them is 0.0054. A bound with fan_in alone, or without the
    6, or the fans swapped in a non-square layer's count, misses both."""
    fan_in, fan_out = 800, 1250
    a = np.sqrt(6.0 / (fan_in + fan_out))
    w = nn.init_weight((fan_in, fan_out), "xavier", rng=np.random.default_rng(0)).astype(np.float64)
    assert w.size == 10 ** 6
    top = np.abs(w).max()
    assert a * (1 - 2e-5) <= top <= a * (1 + 2.0 ** -24)
    assert abs(w.var() / (a * a / 3) - 1) < 6 * np.sqrt((1 / 5 - 1 / 9) / (1 / 9) / w.size)
    lin = nn.Linear(fan_in, fan_out, init="xavier", rng=np.random.default_rng(0))
    assert a * (1 - 2e-5) <= np.abs(lin.weight.data).max() <= a * (1 + 2.0 ** -24)


@pytest.mark.parametrize("make, arg", [
    (lambda v: nn.Linear(v, 3), "in_features"),
    (lambda v: nn.Linear(3, v), "out_features"),
    (lambda v: nn.Maxout(v, 10, 5), "in_features"),
    (lambda v: nn.Maxout(784, v, 5), "units"),
    (lambda v: nn.Maxout(784, 10, v), "pieces"),
])
@pytest.mark.parametrize("value", [0, -1, 2.5, "3", None, True])
def test_layers_refuse_non_positive_sizes_naming_the_argument(make, arg, value):
    with pytest.raises(ValueError, match=f"{arg} must be a positive integer, got {re.escape(repr(value))}"):
        make(value)


def test_layer_sizes_accept_numpy_integers():
    m = nn.Maxout(np.int64(6), np.int32(2), np.uint8(3))
    assert (m.linear.in_features, m.units, m.pieces) == (6, 2, 3)
    assert type(m.pieces) is int and m.linear.weight.shape == (6, 6)


def test_linear_forward_is_x_at_w_plus_b():
    lin = nn.Linear(3, 2, dtype="float64", rng=np.random.default_rng(0))
    lin.bias.data = np.array([1.0, -1.0])
    x = R(4, 3)
    np.testing.assert_allclose(lin(x).data, x @ lin.weight.data + [1.0, -1.0], rtol=1e-14)


def test_to_casts_parameters():
    net = Net().to("float64")
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net(Tensor(R(2, 4))).dtype == np.float64


def test_state_dict_round_trip():
    a, b = Net(), Net()
    for p in b.parameters():
        p.data = p.data + 1
    sd = a.state_dict()
    assert list(sd) == [n for n, _ in a.named_parameters()]
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    b.load_state_dict(sd)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)
        assert p.data is not q.data
    sd["fc1.bias"][:] = 7                          # a copy: the model is untouched
    assert not np.any(a.fc1.bias.data == 7) and not np.any(b.fc1.bias.data == 7)
    x = Tensor(R(3, 4).astype(np.float32))
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_refuses_missing_extra_and_wrong_shape():
    net = Net()
    before = [p.data.copy() for p in net.parameters()]
    sd = net.state_dict()
    del sd["scale"]
    with pytest.raises(KeyError, match="scale"):
        net.load_state_dict(sd)
    sd = net.state_dict()
    sd["extra.weight"] = np.zeros(3)
    with pytest.raises(KeyError, match="extra.weight"):
        net.load_state_dict(sd)
    sd = {k: v + 1 for k, v in net.state_dict().items()}
    sd["body.2.weight"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"body\.2\.weight.*\(2, 3\).*\(3, 2\)"):
        net.load_state_dict(sd)
    for p, q in zip(net.parameters(), before):    # nothing changed on refusal
        np.testing.assert_array_equal(p.data, q)


@pytest.mark.parametrize("key, value, why", [
    ("fc1.weight", lambda w: np.full(w.shape, 1e300), r"up to 1e\+300.*overflow.*float32"),
    ("fc1.weight", lambda w: np.full(w.shape, -1e39), r"overflow.*float32"),
    ("body.2.weight", lambda w: np.where(np.arange(w.size).reshape(w.shape) == 4, np.nan, w),
     "1 NaN or infinite"),
    ("scale", lambda w: np.full(w.shape, np.inf, np.float32), "NaN or infinite"),
    ("fc1.bias", lambda w: np.full(w.shape, 1 + 1j), "not real"),
])
def test_load_state_dict_refuses_overflow_and_non_finite_naming_the_key(key, value, why):
    net = Net()
    before = [p.data.copy() for p in net.parameters()]
    sd = {k: v + 1 for k, v in net.state_dict().items()}     # all other keys would load
    sd[key] = value(sd[key])
    with pytest.raises(ValueError, match=re.escape(f"'{key}'") + ".*" + why):
        net.load_state_dict(sd)
    for p, q in zip(net.parameters(), before):     # all or nothing: no key was assigned
        np.testing.assert_array_equal(p.data, q)


def test_load_state_dict_casts_what_fits():
    net = Net()
    sd = {k: v.astype(np.float64) + 0.5 for k, v in net.state_dict().items()}
    sd["fc1.bias"] = np.arange(5)                  # integers fit float32 exactly
    sd["fc1.weight"][0, 0] = 3.0e38                # finite in float32 (max 3.40e38)
    net.load_state_dict(sd)
    assert net.fc1.bias.dtype == np.float32 and list(net.fc1.bias.data) == [0, 1, 2, 3, 4]
    assert net.fc1.weight.data[0, 0] == np.float32(3.0e38)


def test_sequential_refuses_non_modules_and_module_needs_forward():
    with pytest.raises(TypeError, match="item 1"):
        nn.Sequential(nn.ReLU(), lambda x: x)
    with pytest.raises(NotImplementedError):
        nn.Module()(1)


def test_repr_mentions_structure():
    r = repr(Net())
    assert "Linear(4, 5)" in r and "Maxout(5, units=3, pieces=2\n" in r and "(linear): Linear(5, 6)" in r and "Dropout(p=0.5)" in r
