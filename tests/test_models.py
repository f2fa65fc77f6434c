"""The paper's MNIST G and D: shapes, ranges, initialisation, and a GAN step in
which both players learn (peers.md lesson 3): after one SGD step of the paper's
losses every parameter of G and of D has moved, and G's gradient *through D*
matches finite differences."""
import numpy as np
import pytest

from npgan import GradcheckError, Tensor, gradcheck, models, nn, no_grad, optim

from conftest import with_params


@pytest.fixture(scope="module")
def paper():
    return models.paper_mnist(seed=0)


def d_loss(d, x, fake):
    """-[log D(x) + log(1 - D(G(z)))], from logits."""
    return (-d(x)).softplus().mean() + d(fake).softplus().mean()


def g_loss(d, fake, minimax=False):
    """Non-saturating -log D(G(z)) (what the paper trains with), or the minimax log(1 - D(G(z)))."""
    l = d(fake)
    return -(l.softplus().mean()) if minimax else (-l).softplus().mean()


def fix_dropout(d, seed=3):
    """Give D's dropout layers a fresh generator: the same masks on each call."""
    r = np.random.default_rng(seed)
    for m in d.modules():
        if isinstance(m, nn.Dropout):
            m.rng = r


def tiny(seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    g = models.Generator(z_dim=4, hidden=6, out=10, irange=0.5, rng=rng, dtype=dtype)
    d = models.Discriminator(inp=10, units=3, pieces=3, irange=0.5, rng=rng, dtype=dtype)
    for m in (g, d):      # distinct biases: zero ones tie in maxout when a row is all dropped
        for n, p in m.named_parameters():
            if n.endswith("bias"):
                p.data = rng.normal(0, 0.3, p.shape).astype(dtype)
    return g, d


# ----------------------------------------------------------------------------- shapes, ranges, init

def test_generator_output_shape_and_range(paper):
    g, _ = paper
    z = models.sample_z(16, np.random.default_rng(0))
    x = g(z)
    assert x.shape == (16, 784) and x.dtype == np.float32
    assert np.all(x.data > 0) and np.all(x.data < 1)
    logits = g(z, logits=True)
    # the same logits through two sigmoids (fused in the layer, Tensor.sigmoid):
    # each is 1/(1 + exp(-l)), within ~4 ulps; 16 ulps = 32 u
    np.testing.assert_allclose(logits.sigmoid().data, x.data, rtol=32 * np.finfo(np.float32).eps / 2)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_generator_without_a_graph_runs_rows_in_blocks_with_the_same_output(dtype, monkeypatch):
    """With no backward to follow (no_grad, or no parameter requiring grad),
    batches over G.block rows run block by block; the output is that of one
    pass (both within the reference forward's rounding bound, so within twice
    it of each other: the blocks' GEMMs may sum in another order), and a
    forward that records a graph is never blocked."""
    rng = np.random.default_rng(0)
    g = models.Generator(z_dim=5, hidden=9, out=7, irange=0.5, rng=rng, dtype=dtype)
    z = models.sample_z(23, rng, dim=5, dtype=dtype)
    whole, whole_logits = g(z), g(z, logits=True)
    blocks = []
    one = g._forward
    monkeypatch.setattr(g, "_forward", lambda z, logits: blocks.append(len(z)) or one(z, logits))
    monkeypatch.setattr(g, "block", 5)
    refs = {False: reference_generator(g, z), True: reference_generator(g, z, logits=True)}

    def close(y, want, logits):
        np.testing.assert_array_less(np.abs(y.astype(np.float64) - want), 2 * refs[logits].e)
    with no_grad():
        for logits, want in ((False, whole), (True, whole_logits)):
            blocks.clear()
            y = g(z, logits=logits)
            assert blocks == [5, 5, 5, 5, 3] and y.shape == (23, 7) and y.dtype == dtype
            assert not y.requires_grad
            close(y.data, want.data, logits)
    blocks.clear()
    assert g(z).requires_grad and blocks == [23]                   # a graph: one pass
    for p in g.parameters():
        p.requires_grad = False
    blocks.clear()
    close(g(z).data, whole.data, False)
    assert blocks == [5, 5, 5, 5, 3]
    blocks.clear()
    assert g(Tensor(z, requires_grad=True)).requires_grad and blocks == [23]
    with pytest.raises(ValueError, match="do not match"):         # shape errors as before
        g(z[:, :4])
    monkeypatch.setattr(g, "block", None)                          # None: one pass
    blocks.clear()
    g(z)
    assert blocks == [23]
    for bad in (0, 2.5):
        monkeypatch.setattr(g, "block", bad)
        with pytest.raises(ValueError, match="Generator.block"):
            g(z)


def test_discriminator_logits_shape(paper):
    _, d = paper
    x = np.random.default_rng(1).uniform(0, 1, (9, 784)).astype(np.float32)
    d.eval()
    try:
        l = d(x)
        assert l.shape == (9, 1) and l.dtype == np.float32
        np.testing.assert_array_equal(d(x).data, l.data)       # no dropout in eval
    finally:
        d.train()
    assert not np.array_equal(d(x).data, d(x).data)            # dropout in train


def test_parameter_shapes_counts_and_init(paper):
    g, d = paper
    assert [(n, p.shape) for n, p in g.named_parameters()] == [
        ("h0.weight", (100, 1200)), ("h0.bias", (1200,)), ("h1.weight", (1200, 1200)),
        ("h1.bias", (1200,)), ("y.weight", (1200, 784)), ("y.bias", (784,))]
    assert [(n, p.shape) for n, p in d.named_parameters()] == [
        ("h0.linear.weight", (784, 1200)), ("h0.linear.bias", (1200,)),
        ("h1.linear.weight", (240, 1200)), ("h1.linear.bias", (1200,)),
        ("y.weight", (240, 1)), ("y.bias", (1,))]
    assert g.num_parameters() == 2_503_984 and d.num_parameters() == 1_231_441
    for n, p in g.named_parameters():
        if n.endswith("weight"):
            assert np.abs(p.data).max() <= 0.05 and np.abs(p.data).max() > 0.049, n
    for n, p in d.named_parameters():
        if n.endswith("weight"):
            assert np.abs(p.data).max() <= 0.005 and np.abs(p.data).max() > 0.0049, n
    dropouts = [m for m in d.modules() if isinstance(m, nn.Dropout)]
    assert [m.p for m in dropouts] == [0.2, 0.5, 0.5]


def test_same_seed_same_models():
    a, b = models.paper_mnist(seed=5), models.paper_mnist(seed=5)
    c = models.paper_mnist(seed=6)
    for m, n, o in zip(a, b, c):
        for (k, p), q, r in zip(m.state_dict().items(), n.state_dict().values(), o.state_dict().values()):
            np.testing.assert_array_equal(p, q, err_msg=k)
            if k.endswith("weight"):
                assert not np.array_equal(p, r)


def test_sample_z_priors():
    # default: N(0, I) as the authors' Generator (noise="gaussian"); 2e6 draws:
    # s.e. of the mean 7e-4, of the variance 1e-3, of the kurtosis ~3.5e-3
    z = models.sample_z(20_000, np.random.default_rng(0))
    assert z.shape == (20_000, 100) and z.dtype == np.float32
    assert abs(z.var() - 1.0) < 0.005 and abs(z.mean()) < 0.005
    assert abs(np.mean(z.astype(np.float64) ** 4) - 3.0) < 0.03          # Gaussian kurtosis
    assert abs(np.mean(np.abs(z) > np.sqrt(3)) - 0.0833) < 0.002          # P(|z| > sqrt 3)
    u = models.sample_z(20_000, np.random.default_rng(0), prior="uniform")
    assert np.abs(u).max() <= np.sqrt(3)
    assert abs(u.var() - 1.0) < 0.005 and abs(np.mean(u.astype(np.float64) ** 4) - 1.8) < 0.02
    assert models.sample_z(2, np.random.default_rng(0), dim=3, dtype="float64").dtype == np.float64
    s = models.z_sampler("uniform", dim=3)
    np.testing.assert_array_equal(s(4, np.random.default_rng(1)),
                                  models.sample_z(4, np.random.default_rng(1), dim=3, prior="uniform"))
    with pytest.raises(ValueError, match="prior"):
        models.z_sampler("laplace")


def test_output_bias_is_logit_of_pixel_means():
    rng = np.random.default_rng(0)
    images = (rng.uniform(0, 1, (50, 12)) < np.linspace(0, 1, 12)).astype(np.float64)
    b = models.pixel_logits(images)
    m = np.clip(images.mean(axis=0), 1e-7, 1 - 1e-7)
    # logit then sigmoid in float64: a few eps per operation, times |logit| <= 16.2
    # where the clip at 1e-7 bites: < 1e-13 relative; 1e-9 holds on any CPU
    np.testing.assert_allclose(1 / (1 + np.exp(-b)), m, rtol=1e-9)
    assert np.all(np.isfinite(b))                        # all-0 and all-1 pixels are clipped
    g = models.Generator(z_dim=3, hidden=4, out=12, irange=0.0, output_bias=b,
                         rng=rng, dtype="float64")
    x = g(np.zeros((2, 3)))                              # zero weights: output = sigmoid(bias)
    np.testing.assert_allclose(x.data, np.broadcast_to(m, (2, 12)), rtol=1e-9)


def test_paper_mnist_sets_output_bias():
    images = np.random.default_rng(0).uniform(0, 1, (10, 784))
    g, _ = models.paper_mnist(seed=0, train_images=images)
    np.testing.assert_array_equal(g.y.bias.data, models.pixel_logits(images).astype(np.float32))


# ----------------------------------------------------------------------------- forward, by hand
#
# A plain-NumPy forward of the paper's networks from the module docstring (not
# from npgan's ops), in float64 from the same weights, carried with a bound on
# the rounding of the model's own computation: a product x @ W + b over K
# inputs in a dtype with unit roundoff u is off by at most
# gamma = (K + 1) u (|x| @ |W| + |b|) elementwise, in any summation order
# (Higham, Accuracy and Stability, 3.5); an error e in x reaches the output as
# at most |W|^T e; ReLU and maxout are 1-Lipschitz, sigmoid 1/4-Lipschitz plus
# a few ulps of its own; dropout's scale 1/keep (rounded) and product: 2 u.

def _w(layer):
    return (np.asarray(layer.weight.data, np.float64), np.asarray(layer.bias.data, np.float64))


class _Ref:
    """Value (float64) and error bound of the model's computation, step by step."""

    def __init__(self, x, dtype):
        self.u = np.finfo(dtype).eps / 2
        self.v = np.asarray(x, np.float64)
        self.e = self.u * np.abs(self.v) if dtype == np.float32 else 0 * self.v   # input cast

    def affine(self, w, b):
        k = w.shape[0]
        self.e = self.e @ np.abs(w) + (k + 1) * self.u * (np.abs(self.v) @ np.abs(w) + np.abs(b))
        self.v = self.v @ w + b
        return self

    def relu(self):
        self.v = np.maximum(self.v, 0)
        return self

    def maxout(self, pieces):
        n, m = self.v.shape
        self.v = self.v.reshape(n, m // pieces, pieces).max(-1)      # consecutive groups
        self.e = self.e.reshape(n, m // pieces, pieces).max(-1)
        return self

    def sigmoid(self):
        self.v = 1 / (1 + np.exp(-self.v))
        self.e = self.e / 4 + 8 * self.u * self.v
        return self

    def dropout(self, draws, keep):
        """Inverted dropout: zero where the float32 draw >= keep, else scale by 1/keep."""
        mask = (draws < np.float32(keep)) / keep       # 1/keep rounded, then a product: 2 u
        self.v, self.e = self.v * mask, self.e * mask + 2 * self.u * np.abs(self.v * mask)
        return self


def reference_generator(g, z, logits=False, omit=()):
    """z -> relu(z W0 + b0) -> relu(. W1 + b1) -> . W2 + b2 -> sigmoid.
    ``omit``: names of steps to leave out ("relu0", "relu1"), for the checks
    that a wrong network falls outside the bound."""
    r = _Ref(z, g.h0.weight.dtype).affine(*_w(g.h0))
    if "relu0" not in omit:
        r.relu()
    r.affine(*_w(g.h1))
    if "relu1" not in omit:
        r.relu()
    r.affine(*_w(g.y))
    return r if logits else r.sigmoid()


def reference_discriminator(d, x, draws=None, omit=(), x_err=0.0):
    """x -> [dropout keep .8] -> maxout 5 -> [dropout keep .5] -> maxout 5 ->
    [dropout keep .5] -> linear: the bracketed steps only with ``draws`` (the
    float32 uniform arrays of the train-mode masks, in forward order).
    ``omit``: dropout layers ("drop0", "drop1", "drop2") to leave out; the
    draws then go to the remaining ones in order (one shared generator).
    ``x_err``: a bound on an error x already carries (added to the input's)."""
    r = _Ref(x, d.h0.linear.weight.dtype)
    r.e = r.e + x_err
    keeps = (0.8, 0.5, 0.5)
    draws = list(draws) if draws is not None else None
    for i, layer in enumerate((d.h0, d.h1, None)):
        if draws is not None and f"drop{i}" not in omit:
            r.dropout(draws.pop(0), keeps[i])
        if layer is not None:
            r.affine(*_w(layer.linear)).maxout(layer.pieces)
    return r.affine(*_w(d.y))


def _dropout_draws(gen, shapes):
    """The float32 uniforms the next train-mode forward will draw from the
    dropout generator ``gen`` (D's three layers share one, drawn in forward
    order), from a copy of it."""
    rng = np.random.Generator(type(gen.bit_generator)())
    rng.bit_generator.state = gen.bit_generator.state
    return [rng.random(s, dtype=np.float32) for s in shapes]


def _within(got, ref):
    """(all within the bound?, message). The reference, computed in float64,
    carries the same bound scaled to float64's unit roundoff: the tolerance is
    e (1 + u64 / u) (twice e for a float64 model)."""
    err = np.abs(np.asarray(got, np.float64) - ref.v)
    tol = ref.e * (1 + np.finfo(np.float64).eps / 2 / ref.u)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    return bool(np.all(err <= tol)), (f"|model - reference| {err[worst]:.3g} vs bound "
                                      f"{tol[worst]:.3g} at {worst}")


def _assert_within(got, ref, what):
    ok, msg = _within(got, ref)
    assert ok, f"{what}: {msg}"


def _assert_outside(got, ref, what):
    """The bound is tight enough to tell a wrong network from the right one."""
    ok, msg = _within(got, ref)
    assert not ok, f"{what}: a wrong reference still matches ({msg})"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_paper_generator_equals_a_numpy_reference(dtype):
    rng = np.random.default_rng(7)
    images = rng.uniform(0, 1, (30, 784))
    g, _ = models.paper_mnist(seed=3, train_images=images, dtype=dtype)
    for p in (g.h0.bias, g.h1.bias):        # nonzero hidden biases: a bias-free layer passes too
        p.data = rng.normal(0, 0.05, p.shape).astype(dtype)
    z = models.sample_z(9, rng, dtype=dtype)
    _assert_within(g(z, logits=True).data, reference_generator(g, z, logits=True), "G logits")
    y = g(z).data
    _assert_within(y, reference_generator(g, z), "G images")
    for omit in ("relu0", "relu1"):
        _assert_outside(y, reference_generator(g, z, omit=(omit,)), f"G without {omit}")
    with no_grad():                                 # the blocked path: same values
        g.block = 4
        _assert_within(g(z).data, reference_generator(g, z), "G images, in blocks of 4")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_paper_discriminator_equals_a_numpy_reference_in_eval_and_train_mode(dtype):
    """Eval mode: no dropout. Train mode: the masks that D's dropout generator
    gives (keep .8 on the input, .5 on each maxout's output, scaled by 1/keep),
    reproduced from a copy of that generator; a D missing any of the three
    dropouts falls outside the bound."""
    rng = np.random.default_rng(8)
    _, d = models.paper_mnist(seed=4, dtype=dtype)
    for p in (d.h0.linear.bias, d.h1.linear.bias, d.y.bias):
        p.data = rng.normal(0, 0.005, p.shape).astype(dtype)
    n = 11
    x = rng.uniform(0, 1, (n, 784)).astype(dtype)
    d.eval()
    try:
        _assert_within(d(x).data, reference_discriminator(d, x), "D eval")
    finally:
        d.train()
    for step in range(2):                            # two calls: fresh masks each time
        draws = _dropout_draws(d.dropout_rng, [(n, 784), (n, 240), (n, 240)])
        ref = reference_discriminator(d, x, draws)
        out = d(x).data
        _assert_within(out, ref, f"D train, call {step}")
        _assert_outside(out, reference_discriminator(d, x), "D train vs no dropout")
        for i, shapes in ((0, [(n, 240), (n, 240)]), (1, [(n, 784), (n, 240)]),
                          (2, [(n, 784), (n, 240)])):
            # the same generator state, with one dropout layer fewer drawing from it
            wrong = reference_discriminator(d, x, _dropout_draws_at(draws, shapes), omit=(f"drop{i}",))
            _assert_outside(out, wrong, f"D train without drop{i}")
    # the masks are the documented ones: keep 0.8 of the inputs and 0.5 of the
    # hidden units (binomial: 3 s.d. of the fraction = 0.004, 0.03)
    assert abs((draws[0] < np.float32(0.8)).mean() - 0.8) < 0.01
    assert abs((draws[1] < np.float32(0.5)).mean() - 0.5) < 0.05


def _dropout_draws_at(draws, shapes):
    """The uniforms a D with fewer dropout layers would draw from the same
    generator state: the same stream cut into ``shapes``."""
    flat = np.concatenate([u.ravel() for u in draws])
    out, i = [], 0
    for s in shapes:
        k = int(np.prod(s))
        out.append(flat[i:i + k].reshape(s))
        i += k
    return out


# ----------------------------------------------------------------------------- a GAN step

def _assert_first_sgd_step(who, stepped, before, grads, other, other_before):
    """``stepped`` took SGD's first step (lr 0.1, v = 0) from ``before`` with ``grads``,
    every gradient non-zero; ``other`` is still at ``other_before``."""
    for n, p in stepped.named_parameters():
        assert np.any(grads[n] != 0), f"{who}.{n} got no gradient"
        # first step from v = 0: v = -(0.1 * grad), p += v, in float32 exactly as SGD does
        np.testing.assert_array_equal(p.data, before[n] + (np.zeros_like(p.data) - 0.1 * grads[n]),
                                      err_msg=n)
    for n, p in other.named_parameters():
        np.testing.assert_array_equal(p.data, other_before[n], err_msg=f"{who}'s step moved {n}")


@pytest.mark.parametrize("minimax", [False, True])
def test_one_sgd_step_moves_every_parameter_of_both(minimax):
    """Algorithm 1 with k = 1: a D step, then a G step. Each player's
    optimizer moves exactly its own parameters, each by -lr * grad, and
    every one of them moves."""
    g, d = models.paper_mnist(seed=1)
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (8, 784)).astype(np.float32)
    opt_d = optim.SGD(d.parameters(), lr=0.1, momentum=0.5)
    opt_g = optim.SGD(g.parameters(), lr=0.1, momentum=0.5)
    g0 = {n: p.data.copy() for n, p in g.named_parameters()}
    d0 = {n: p.data.copy() for n, p in d.named_parameters()}

    opt_d.zero_grad()
    with no_grad():
        fake = g(models.sample_z(8, rng))
    loss = d_loss(d, x, Tensor(fake.data))
    loss.backward()
    grads = {n: p.grad.copy() for n, p in d.named_parameters()}
    opt_d.step()
    _assert_first_sgd_step("D", d, d0, grads, g, g0)

    d1 = {n: p.data.copy() for n, p in d.named_parameters()}
    opt_g.zero_grad()
    opt_d.zero_grad()
    loss = g_loss(d, g(models.sample_z(8, rng)), minimax)
    loss.backward()
    grads = {n: p.grad.copy() for n, p in g.named_parameters()}
    opt_g.step()
    _assert_first_sgd_step("G", g, g0, grads, d, d1)

    for name, model, before in (("G", g, g0), ("D", d, d0)):
        for n, p in model.named_parameters():
            assert not np.array_equal(p.data, before[n]), f"{name}.{n} did not change"


def test_g_gradient_through_d_matches_finite_differences_tiny():
    """Every element: G's parameters and z, through D in train mode (fixed masks)."""
    g, d = tiny()

    def loss_of_g(z):
        fix_dropout(d)
        return g_loss(d, g(z))
    fn, params = with_params(g, loss_of_g)
    z = models.sample_z(3, np.random.default_rng(0), dim=4, dtype="float64")
    assert gradcheck(fn, z, *params, atol=1e-8)


def test_d_gradient_matches_finite_differences_tiny():
    g, d = tiny(seed=1)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3, 10))
    fake = g(models.sample_z(3, rng, dim=4, dtype="float64")).data

    def loss_of_d(xx):
        fix_dropout(d)
        return d_loss(d, xx, Tensor(fake))
    fn, params = with_params(d, loss_of_d)
    assert gradcheck(fn, x, *params, atol=1e-8)


def test_paper_size_g_through_d_random_directions():
    """The full-size networks in float64: directional derivatives of G's loss
    with respect to (z, all of G's parameters) match finite differences."""
    g, d = models.paper_mnist(seed=0)
    g.to("float64"), d.to("float64")

    def loss_of_g(z):
        fix_dropout(d)
        return g_loss(d, g(z))
    fn, params = with_params(g, loss_of_g)
    z = models.sample_z(4, np.random.default_rng(0), dtype="float64")
    assert gradcheck(fn, z, *params, mode="random", n_directions=2, atol=1e-8, rtol=1e-5)


def test_paper_size_d_random_directions():
    g, d = models.paper_mnist(seed=0)
    g.to("float64"), d.to("float64")
    rng = np.random.default_rng(0)
    fake = g(models.sample_z(4, rng, dtype="float64")).data

    def loss_of_d(x):
        fix_dropout(d)
        return d_loss(d, x, Tensor(fake))
    fn, params = with_params(d, loss_of_d)
    assert gradcheck(fn, rng.uniform(0, 1, (4, 784)), *params, mode="random", n_directions=2,
                     atol=1e-8, rtol=1e-5)


def test_gradcheck_would_catch_a_broken_g_step():
    """The check above is not vacuous: with G's gradient scaled by 1.1 it fails."""
    g, d = tiny()

    def scaled(t):
        return Tensor.make(t.data, (t,), lambda gr: (1.1 * gr,), "scale_grad")

    def loss_of_g(z):
        fix_dropout(d)
        return g_loss(d, scaled(g(z)))
    fn, params = with_params(g, loss_of_g)
    z = models.sample_z(3, np.random.default_rng(0), dim=4, dtype="float64")
    with pytest.raises(GradcheckError, match="disagrees"):
        gradcheck(fn, z, *params)


def test_run_prior_reads_the_config_and_old_runs_are_uniform():
    assert models.run_prior({"z": "gaussian", "seed": 0}) == "gaussian"
    assert models.run_prior({"z": "uniform"}) == "uniform"
    assert models.run_prior({"seed": 0}) == "uniform"        # written before --z existed
