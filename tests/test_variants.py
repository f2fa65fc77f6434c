"""npgan.variants (WGAN, WGAN-GP, unrolled GAN), Module.functional_call, and the
examples variants.py / wgan_gp_mnist.py at reduced size.

Gradients that pass through second derivatives (the penalty's w.r.t. D's
parameters, the unrolled G loss w.r.t. G's) are checked against central
finite differences in float64 on tiny networks."""
import importlib.util
import os

import numpy as np
import pytest

import npgan
from npgan import nn, optim, toys, variants
from npgan.metrics.modes import sample_ring
from npgan.tensor import Tensor
from npgan.train import GANTrainer

pytestmark = pytest.mark.usefixtures("one_blas_thread")   # tiny matrices, busy shared cores

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny(sizes, seed, dtype="float64"):
    return toys.ReLUMLP(sizes, np.random.default_rng(seed)).to(dtype)


def tanh_mlp(sizes, seed):
    """Smooth (tanh) MLP: finite differences of second-order terms are exact to O(h^2)."""
    return toys.mlp(sizes, np.random.default_rng(seed)).to("float64")


def fd_grad(f, params, h=1e-6):
    """Central differences of the scalar f() w.r.t. every entry of every parameter."""
    out = []
    for p in params:
        g = np.zeros_like(p.data)
        for i in np.ndindex(p.shape):
            old = p.data[i]
            p.data[i] = old + h
            up = f()
            p.data[i] = old - h
            down = f()
            p.data[i] = old
            g[i] = (up - down) / (2 * h)
        out.append(g)
    return out


# ---- functional_call ----------------------------------------------------------------
def test_functional_call_uses_the_given_tensors_and_restores_the_parameters():
    D = tiny([2, 3, 3, 1], 0)
    x = np.random.default_rng(1).standard_normal((4, 2))
    own = {n: p for n, p in D.named_parameters()}
    new = {n: Tensor(p.data * 2) for n, p in own.items()}
    y = D.functional_call(new, x).numpy()
    twin = tiny([2, 3, 3, 1], 0)
    for p in twin.parameters():
        p.data = p.data * 2
    np.testing.assert_allclose(y, twin(x).numpy(), rtol=1e-12)
    assert all(p is own[n] for n, p in D.named_parameters())          # restored
    np.testing.assert_allclose(D(x).numpy() * 1, tiny([2, 3, 3, 1], 0)(x).numpy())
    # a partial dict: the rest stay the module's own
    y1 = D.functional_call({"l2.bias": Tensor(own["l2.bias"].data + 1)}, x).numpy()
    np.testing.assert_allclose(y1, D(x).numpy() + 1, rtol=1e-12)


def test_functional_call_differentiates_through_the_substitutes():
    D = tiny([2, 3, 3, 1], 0)
    x = np.random.default_rng(1).standard_normal((4, 2))
    w = Tensor(D.l0.weight.data.copy(), requires_grad=True)
    w2 = w * 3.0                                        # a non-leaf with history
    (g,) = npgan.grad(D.functional_call({"l0.weight": w2}, x).sum(), [w])
    D.l0.weight.data = D.l0.weight.data * 3.0
    D.zero_grad()
    D(x).sum().backward()
    np.testing.assert_allclose(g.numpy(), 3.0 * D.l0.weight.grad, rtol=1e-12)


def test_functional_call_refuses_unknown_names_and_shapes_and_restores_on_error():
    D = tiny([2, 3, 3, 1], 0)
    with pytest.raises(KeyError, match="nope"):
        D.functional_call({"nope": Tensor(np.ones(1))}, np.ones((1, 2)))
    with pytest.raises(ValueError, match="shape"):
        D.functional_call({"l0.weight": Tensor(np.ones((3, 2)))}, np.ones((1, 2)))
    w = D.l0.weight
    with pytest.raises(ValueError):        # the forward fails inside the swap
        D.functional_call({"l0.weight": Tensor(np.ones((2, 3)))}, np.ones((1, 5)))
    assert D.l0.weight is w and isinstance(D.l0.weight, nn.Parameter)


def test_functional_call_on_nested_maxout_and_sequential():
    D = npgan.models.Discriminator(inp=4, units=3, pieces=2, p_input=0, p_hidden=0,
                                   rng=np.random.default_rng(0), dtype="float64")
    x = np.random.default_rng(1).standard_normal((5, 4))
    params = {n: Tensor(p.data + 0.01) for n, p in D.named_parameters()}
    y = D.functional_call(params, x).numpy()
    for p in D.parameters():
        p.data = p.data + 0.01
    np.testing.assert_allclose(y, D(x).numpy(), rtol=1e-12)
    S = nn.Sequential(nn.Linear(2, 2, rng=np.random.default_rng(0), dtype="float64"), nn.Tanh())
    z = S.functional_call({"0.bias": Tensor(np.array([1.0, -1.0]))}, np.zeros((1, 2))).numpy()
    np.testing.assert_allclose(z, np.tanh([[1.0, -1.0]]))


# ---- WGAN pieces ----------------------------------------------------------------------
def test_wasserstein_losses_and_clipping():
    r, f = Tensor(np.array([[1.0], [3.0]])), Tensor(np.array([[-1.0], [0.5]]))
    assert variants.critic_loss(r, f).item() == pytest.approx(-0.25 - 2.0)
    assert variants.generator_loss(f).item() == pytest.approx(0.25)
    D = tiny([2, 8, 8, 1], 0)
    variants.clip_weights_(D.parameters(), 0.01)
    assert all(np.abs(p.data).max() <= 0.01 for p in D.parameters())
    assert any(np.abs(p.data).max() == 0.01 for p in D.parameters())     # clamped, not scaled
    with pytest.raises(ValueError):
        variants.clip_weights_(D.parameters(), 0.0)


def _ring_wgan(gp, seed=0, n_critic=2, batch=32):
    rng = np.random.default_rng(seed)
    G, D = toys.ReLUMLP([4, 16, 16, 2], rng), toys.ReLUMLP([2, 16, 16, 1], rng)
    if gp:
        og, od = optim.Adam(G.parameters(), 1e-4, (0.0, 0.9)), optim.Adam(D.parameters(), 1e-4, (0.0, 0.9))
    else:
        og, od = optim.RMSprop(G.parameters(), 5e-5), optim.RMSprop(D.parameters(), 5e-5)
    return G, D, variants.WassersteinTrainer(
        G, D, lambda m, r: sample_ring(m, r), toys.noise("gaussian", 4), og, od, n_critic=n_critic,
        clip=None if gp else 0.01, gp_weight=10.0 if gp else None, batch_size=batch, generator=rng)


def test_wgan_trainer_respects_clipping_and_its_critic_has_no_sigmoid():
    G, D, tr = _ring_wgan(gp=False)
    for _ in range(3):
        stats = tr.step()
    assert all(np.abs(p.data).max() <= 0.01 + 1e-9 for p in D.parameters())
    assert tr.g_steps == 3 and tr.opt_d.steps == 6 and tr.opt_g.steps == 3
    # the critic is D's last linear layer, unsquashed: values are not probabilities
    x = np.array([[100.0, -100.0]], dtype="float32")
    D.l2.bias.data[:] = 5.0
    assert D(x).item() > 1.0
    assert np.isfinite(stats["critic_loss"]) and np.isfinite(stats["g_loss"])
    with pytest.raises(ValueError, match="exactly one"):
        variants.WassersteinTrainer(G, D, None, None, None, None, clip=0.01, gp_weight=10.0)


def test_wgan_gp_trainer_steps_and_descending_the_penalty_alone_reaches_unit_norm():
    G, D, tr = _ring_wgan(gp=True, n_critic=5, batch=64)
    for _ in range(4):
        stats = tr.step()
    assert stats["gp"] > 0 and tr.opt_d.steps == 20 and tr.opt_g.steps == 4
    # descending the penalty alone drives ||grad_x D|| to 1: the sign and the graph are right
    x = sample_ring(64, np.random.default_rng(1))
    opt = optim.Adam(D.parameters(), 1e-2)
    first = variants.gradient_penalty(D, x).item()
    for _ in range(60):
        opt.zero_grad()
        variants.gradient_penalty(D, x).backward()
        opt.step()
    assert variants.gradient_penalty(D, x).item() < 0.05 * first


# ---- the gradient penalty: value, and its gradient by finite differences ---------------
def test_gradient_penalty_value_for_a_linear_critic():
    # D(x) = x @ w + b: grad_x D = w for every row, penalty (||w|| - 1)^2
    lin = nn.Linear(3, 1, rng=np.random.default_rng(0), dtype="float64")
    lin.weight.data = np.array([[0.6], [0.0], [0.8 * 3]])
    x = np.random.default_rng(1).standard_normal((5, 3))
    gp = variants.gradient_penalty(lin, x)
    assert gp.item() == pytest.approx((np.sqrt(0.36 + 5.76) - 1) ** 2, rel=1e-9)


def test_gradient_penalty_gradient_matches_finite_differences():
    D = tanh_mlp([2, 5, 4, 1], 3)
    rng = np.random.default_rng(4)
    x, fake = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    xh = variants.interpolate(x, fake, np.random.default_rng(5))
    D.zero_grad()
    variants.gradient_penalty(D, xh).backward()
    got = [p.grad for p in D.parameters()]
    want = fd_grad(lambda: variants.gradient_penalty(D, xh, create_graph=False).item(),
                   D.parameters())
    for g, w in zip(got, want):           # D's last bias does not move grad_x D: no gradient
        np.testing.assert_allclose(np.zeros_like(w) if g is None else g, w, rtol=1e-6, atol=1e-8)


def test_gradient_penalty_relu_critic_against_finite_differences():
    # piecewise linear: exact away from the kinks (h small enough not to cross one)
    D = tiny([2, 6, 6, 1], 7)
    xh = np.random.default_rng(8).standard_normal((5, 2))
    D.zero_grad()
    variants.gradient_penalty(D, xh).backward()
    want = fd_grad(lambda: variants.gradient_penalty(D, xh, create_graph=False).item(),
                   D.parameters(), h=1e-7)
    for p, w in zip(D.parameters(), want):
        np.testing.assert_allclose(np.zeros_like(w) if p.grad is None else p.grad, w, rtol=1e-5,
                                   atol=1e-7)


def test_interpolate_lies_on_the_segments():
    x, f = np.zeros((100, 2)), np.ones((100, 2))
    xh = variants.interpolate(x, f, np.random.default_rng(0))
    assert np.all(xh[:, 0] == xh[:, 1]) and 0 < xh.min() and xh.max() < 1
    assert 0.3 < xh.mean() < 0.7                     # eps ~ U[0, 1], one per row


# ---- the unrolled GAN ------------------------------------------------------------------
def _unrolled_game(opt_kind, unroll, seed=0):
    rng = np.random.default_rng(seed)
    G, D = tanh_mlp([2, 4, 2], seed), tanh_mlp([2, 4, 1], seed + 1)
    if opt_kind == "adam":
        og, od = optim.Adam(G.parameters(), 1e-2, (0.5, 0.999)), optim.Adam(D.parameters(), 0.05, (0.5, 0.999))
    else:
        og, od = optim.SGD(G.parameters(), 0.1), optim.SGD(D.parameters(), 0.3, momentum=0.5)
    gan = GANTrainer(G, D, lambda m, r: sample_ring(m, r, dtype="float64"), batch_size=8, k=1,
                     simultaneous=False, opt_g=og, opt_d=od, d_scale=1.0, generator=rng,
                     sample_z=lambda m, r: r.standard_normal((m, 2)))
    return G, D, gan, variants.UnrolledTrainer(gan, unroll)


@pytest.mark.parametrize("opt_kind", ["sgd", "adam"])
def test_unrolled_g_loss_gradient_matches_finite_differences(opt_kind):
    G, D, gan, tr = _unrolled_game(opt_kind, unroll=3)
    for _ in range(2):
        tr.step()                                   # buffers of D's optimizer not zero
    rng = np.random.default_rng(9)
    z, x = rng.standard_normal((8, 2)), sample_ring(8, rng, dtype="float64")
    gs = npgan.grad(tr.g_loss(z, x), G.parameters())
    want = fd_grad(lambda: tr.g_loss(z, x).item(), G.parameters())
    for g, w in zip(gs, want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-8)
    # ... and it is not the gradient through a stop-gradient copy of the unrolled D
    params = variants.unrolled_parameters(D, gan.opt_d, lambda f: gan._d_loss(
        f(Tensor(x)), f(G(z))), 3)
    frozen = {n: Tensor(p.data) for n, p in params.items()}
    gs_stop = npgan.grad(gan._g_loss(D.functional_call(frozen, G(z))), G.parameters())
    assert max(np.abs(a.numpy() - b.numpy()).max() for a, b in zip(gs, gs_stop)) > 1e-4
    np.testing.assert_allclose(gan._g_loss(D.functional_call(frozen, G(z))).item(),
                               tr.g_loss(z, x).item(), rtol=1e-12)


@pytest.mark.parametrize("opt_kind", ["sgd", "adam"])
def test_unrolled_parameters_equal_the_optimizers_own_steps(opt_kind):
    G, D, gan, tr = _unrolled_game(opt_kind, unroll=2)
    tr.step()
    rng = np.random.default_rng(3)
    z, x = rng.standard_normal((8, 2)), sample_ring(8, rng, dtype="float64")
    with npgan.no_grad():
        fake = G(z).data
    before = {n: p.data.copy() for n, p in D.named_parameters()}
    params = variants.unrolled_parameters(D, gan.opt_d, lambda f: gan._d_loss(
        f(Tensor(x)), f(Tensor(fake))), 4)
    for n, p in D.named_parameters():
        np.testing.assert_array_equal(p.data, before[n])              # D untouched
    for _ in range(4):                                                # the real thing
        gan.opt_d.zero_grad()
        gan._d_loss(D(Tensor(x)), D(Tensor(fake))).backward()
        gan.opt_d.step()
    for n, p in D.named_parameters():
        np.testing.assert_allclose(params[n].numpy(), p.data, rtol=1e-10, atol=1e-12)


def test_unrolled_zero_is_the_plain_g_loss_and_trainer_counts():
    G, D, gan, tr = _unrolled_game("adam", unroll=0)
    rng = np.random.default_rng(3)
    z, x = rng.standard_normal((8, 2)), sample_ring(8, rng, dtype="float64")
    assert tr.g_loss(z, x).item() == pytest.approx(gan._g_loss(D(G(z))).item(), rel=1e-12)
    tr.step()
    tr.step()
    assert tr.g_steps == 2 and gan.opt_d.steps == 2 and gan.opt_g.steps == 2


# ---- the examples at reduced size ----------------------------------------------------------
def test_variants_example_runs_every_method_and_writes_results(tmp_path):
    ex = load_example("variants")
    for method, k in [("vanilla", 2), ("wgan", 2), ("wgan-gp", 2), ("unrolled", 2)]:
        ex.main(["--method", method, "--k", str(k), "--seeds", "0", "1", "--steps", "3",
                 "--out", str(tmp_path), "--no-plot"])
    import json
    res = json.load(open(tmp_path / "ring.json"))
    assert sorted(res) == ["unrolled k=2", "vanilla k=2", "wgan k=2", "wgan-gp k=2"]
    for e in res.values():
        assert e["steps"] == 3 and [r["seed"] for r in e["runs"]] == [0, 1]
        for r in e["runs"]:
            assert 0 <= r["modes"] <= 8 and 0 <= r["hq"] <= 1 and r["sec_per_g_step"] > 0
    ex.main(["--table", "--out", str(tmp_path)])
    md = ex.table(res)
    assert md.count("\n") == 2 + 4 and "| vanilla k=2 |" in md and "seed 1: modes / HQ" in md
    pytest.importorskip("matplotlib")
    ex.main(["--plot-only", "--out", str(tmp_path), "--figure", str(tmp_path / "f.png")])
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_wgan_gp_mnist_example_steps_resumes_exactly_and_its_g_loads(tmp_path, monkeypatch):
    ex = load_example("wgan_gp_mnist")
    fake = np.random.default_rng(0).random((200, 784), dtype=np.float32)   # MNIST-shaped, no I/O
    monkeypatch.setattr(ex, "load_train", lambda data_dir, n: fake[:n])
    args = ["--train-size", "200", "--batch", "8", "--log-every", "1", "--seed", "2",
            "--hidden", "32", "--units", "8"]
    tr = ex.main(args + ["--steps", "1", "--out", str(tmp_path / "a")])
    assert tr.g_steps == 1 and tr.opt_d.steps == 5
    # the critic: the paper's maxout D without dropout, its output no probability
    assert tr.D.drop0.p == tr.D.drop1.p == tr.D.drop2.p == 0
    tr2 = ex.main(args + ["--steps", "2", "--out", str(tmp_path / "a")])        # continues
    ref = ex.main(args + ["--steps", "2", "--out", str(tmp_path / "b")])
    assert tr2.g_steps == 2
    for p, q in zip(tr2.G.parameters() + tr2.D.parameters(), ref.G.parameters() + ref.D.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    G = npgan.sampling.load_generator(str(tmp_path / "a" / "checkpoint.npz"),
                                      G=npgan.models.Generator(hidden=32))
    np.testing.assert_array_equal(G.y.bias.data, tr2.G.y.bias.data)
    assert G.z_prior == "gaussian"
    log = [l for l in open(tmp_path / "a" / "log.jsonl")]
    assert len(log) == 2
