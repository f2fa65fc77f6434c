"""npgan.conditional: one-hot wiring of the conditional G and D, gradients against
finite differences, a 2-class toy that the conditional game learns, and the
example end to end at toy size."""
import importlib.util
import json
import os

import numpy as np
import pytest

from npgan import backend, conditional as C, optim, train
from npgan.gradcheck import gradcheck
from npgan.tensor import Tensor, concatenate, no_grad

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")


def small(seed=0, out=6, n_classes=3, noise=4, dtype="float32"):
    rng = np.random.default_rng(seed)
    G = C.ConditionalGenerator(noise_dim=noise, n_classes=n_classes, hidden=8, out=out, irange=0.5, rng=rng,
                               dtype=dtype)
    D = C.ConditionalDiscriminator(inp=out, n_classes=n_classes, units=5, pieces=2, irange=0.5, rng=rng,
                                   dtype=dtype)
    return G, D


def test_one_hot_and_pack():
    oh = C.one_hot(np.array([2, 0, 9]))
    assert oh.shape == (3, 10) and oh.dtype == np.float32
    assert np.array_equal(oh.argmax(1), [2, 0, 9]) and np.array_equal(oh.sum(1), [1, 1, 1])
    with pytest.raises(ValueError):
        C.one_hot(np.array([10]))
    with pytest.raises(ValueError):
        C.one_hot(np.array([0.5]))
    x = np.random.default_rng(0).random((4, 784)).astype(np.float32)
    p = C.pack(x, np.array([1, 2, 3, 4]))
    assert p.shape == (4, 794) and np.array_equal(p[:, :784], x) and np.array_equal(p[:, 784:].argmax(1), [1, 2, 3, 4])


def test_label_sampler_rows():
    s = C.label_z_sampler(z_dim=5, n_classes=3)
    r = backend.to_numpy(s(600, np.random.default_rng(0)))
    assert r.shape == (600, 8)
    y = r[:, 5:]
    assert np.array_equal(y.sum(1), np.ones(600)) and set(np.unique(y)) == {0.0, 1.0}
    counts = np.bincount(y.argmax(1), minlength=3)
    assert counts.min() > 150                       # uniform over the 3 classes
    assert abs(r[:, :5].mean()) < 0.1 and abs(r[:, :5].std() - 1) < 0.1


def test_generator_passes_label_and_label_changes_image():
    G, _ = small()
    zy = np.concatenate([np.random.default_rng(1).standard_normal((2, 4)), C.one_hot(np.array([0, 0]), 3)], 1)
    out = G(Tensor(zy.astype(np.float32))).numpy()
    assert out.shape == (2, 9)
    assert np.array_equal(out[:, 6:], zy[:, 4:])      # the label travels beside the image
    assert np.all((out[:, :6] > 0) & (out[:, :6] < 1))
    zy2 = zy.copy()
    zy2[:, 4:] = C.one_hot(np.array([2, 2]), 3)       # same z, another label
    out2 = G(Tensor(zy2.astype(np.float32))).numpy()
    assert np.abs(out2[:, :6] - out[:, :6]).max() > 1e-3
    assert np.array_equal(G.images(zy.astype(np.float32)).numpy(), out[:, :6])
    # the label's weights are G's input rows 4..6: zeroing them removes the effect
    G.h0.weight.data[4:] = 0
    a, b = G(Tensor(zy.astype(np.float32))).numpy(), G(Tensor(zy2.astype(np.float32))).numpy()
    assert np.array_equal(a[:, :6], b[:, :6])


def test_discriminator_reads_label_and_drops_only_pixels():
    _, D = small()
    D.eval()
    x = np.random.default_rng(2).random((3, 6)).astype(np.float32)
    l0 = D(Tensor(C.pack(x, np.array([0, 0, 0]), 3))).numpy()
    l1 = D(Tensor(C.pack(x, np.array([1, 1, 1]), 3))).numpy()
    assert l0.shape == (3, 1) and np.abs(l0 - l1).max() > 1e-4
    seen = []
    drop0 = D.drop0.forward
    D.drop0.forward = lambda t: (seen.append(t.shape), drop0(t))[1]
    D.train()
    D(Tensor(C.pack(x, np.array([0, 1, 2]), 3)))
    assert seen == [(3, 6)]                             # input dropout sees the pixels only


def test_gradients_match_finite_differences():
    G, D = small(dtype="float64")
    D.eval()
    y = C.one_hot(np.array([0, 2, 1]), 3).astype(np.float64)

    def d_of_g(z):                      # G's gradient through D, label fixed
        return D(G(concatenate([z, Tensor(y)], axis=1)))
    assert gradcheck(d_of_g, np.random.default_rng(3).standard_normal((3, 4)))

    def d_of_x(x):                      # D's gradient in its pixel input
        return D(concatenate([x, Tensor(y)], axis=1))
    assert gradcheck(d_of_x, np.random.default_rng(4).random((3, 6)))


def test_trainer_learns_the_label_on_a_two_class_toy():
    """Class 0 near (0.2, 0.2), class 1 near (0.8, 0.8): G(z, y) must follow y."""
    rng = np.random.default_rng(0)
    G = C.ConditionalGenerator(noise_dim=2, n_classes=2, hidden=32, out=2, irange=0.3, rng=rng)
    D = C.ConditionalDiscriminator(inp=2, n_classes=2, units=16, pieces=2, irange=0.3, p_input=0.0,
                                   p_hidden=0.0, rng=rng)
    y = rng.integers(0, 2, 2000)
    x = (np.where(y[:, None] == 0, 0.2, 0.8) + 0.05 * rng.standard_normal((2000, 2))).astype(np.float32)
    t = train.GANTrainer(G, D, C.pack(x, y, 2), batch_size=50, seed=1,
                         opt_g=optim.Adam(G.parameters(), lr=5e-3, betas=(0.5, 0.999)),
                         opt_d=optim.Adam(D.parameters(), lr=5e-3, betas=(0.5, 0.999)),
                         sample_z=C.label_z_sampler(z_dim=2, n_classes=2))
    for _ in range(8):
        t.train_epoch()
    m0 = C.generate(G, np.zeros(500, int)).mean(0)
    m1 = C.generate(G, np.ones(500, int)).mean(0)
    # the label is followed (an ignored label gives m0 == m1); quality is not the point
    assert np.all(m0 < 0.35) and np.all(m1 > 0.65), (m0, m1)


def test_generate_asks_for_each_label():
    G, _ = small(out=784, n_classes=10, noise=100)
    x = C.generate(G, np.array([3, 3, 5]), rng=0)
    assert x.shape == (3, 784)
    again = C.generate(G, np.array([3, 3, 5]), rng=0)
    assert np.array_equal(x, again)
    with no_grad():
        zy = C.labelled_z(np.array([3, 3, 5]), np.random.default_rng(0))
        assert np.array_equal(backend.to_numpy(zy[:, 100:]).argmax(1), [3, 3, 5])


def test_example_end_to_end(tmp_path):
    spec = importlib.util.spec_from_file_location("conditional_gan", os.path.join(EXAMPLES, "conditional_gan.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out, res, fig = str(tmp_path / "run"), str(tmp_path / "r.json"), str(tmp_path / "g.png")
    args = ["--train-size", "200", "--per-class", "20", "--n-ref", "500", "--ema", "--no-real-floor", "--no-progress", "--out", out, "--results", res,
            "--figure", fig]
    assert mod.main(args + ["--epochs", "1", "--skip-eval"]) is None
    with pytest.raises(SystemExit, match="--resume"):          # never overwrite a run silently
        mod.main(args + ["--epochs", "2"])
    r = mod.main(args + ["--epochs", "2", "--resume"])
    assert r["epochs"] == 2 and r["steps"] == 4 and r["G"]["n"] == 200
    assert len(r["G"]["fd_per_class"]) == 10 and all(np.isfinite(r["G"]["fd_per_class"]))
    assert "G" in r and "G_ema0.999" not in r and "real_valid_vs_test" not in r
    assert r["G"]["fd"] > 50 and r["G"]["accuracy"] < 0.5   # an untrained G is far from the data
    assert json.load(open(res))["steps"] == 4 and os.path.exists(fig)


def test_widened_unconditional_pair_computes_the_unconditional_game():
    from npgan import models
    rng = np.random.default_rng(6)
    g = models.Generator(z_dim=4, hidden=8, out=6, irange=0.5, rng=rng)
    d = models.Discriminator(inp=6, units=5, pieces=2, irange=0.5, rng=rng)
    G, D = small()
    C.from_unconditional(G, D, g.state_dict(), d.state_dict())
    d.eval(), D.eval()
    z = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    for label in (0, 2):
        zy = np.concatenate([z, C.one_hot(np.full(3, label), 3)], 1)
        assert np.allclose(G.images(zy).numpy(), g(Tensor(z)).numpy(), atol=1e-6)
        x = g(Tensor(z)).numpy()
        assert np.allclose(D(Tensor(C.pack(x, np.full(3, label), 3))).numpy(), d(Tensor(x)).numpy(), atol=1e-6)
    assert np.array_equal(G.h0.weight.numpy()[4:], np.zeros((3, 8)))   # the label rows start at zero


def test_label_scale_is_a_scaling_of_the_label_rows():
    G, D = small()
    G2, D2 = small()
    G2.label_scale = D2.label_scale = 10.0
    G.h0.weight.data[4:] *= 10.0                        # the same as scaling the input
    D.h0.linear.weight.data[6:] *= 10.0
    D.eval(), D2.eval()
    zy = np.concatenate([np.random.default_rng(8).standard_normal((3, 4)), C.one_hot(np.array([0, 1, 2]), 3)], 1)
    a, b = G(Tensor(zy.astype(np.float32))).numpy(), G2(Tensor(zy.astype(np.float32))).numpy()
    assert np.allclose(a, b, atol=1e-5) and np.array_equal(b[:, 6:], zy[:, 4:])   # the label passes unscaled
    xy = C.pack(a[:, :6], np.array([2, 0, 1]), 3)
    assert np.allclose(D(Tensor(xy)).numpy(), D2(Tensor(xy)).numpy(), atol=1e-5)
