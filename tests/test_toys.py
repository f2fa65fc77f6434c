"""npgan.toys (the 1-D game) and the trainer on a data sampler: the draws come
in Algorithm 1's order from one stream, D can train alone, each player keeps its
own learning-rate schedule."""
import numpy as np
import pytest

from npgan import models, optim, toys, train


def test_both_players_learn_in_one_iteration():
    """One iteration of Algorithm 1 moves every parameter of D and of G."""
    for loss in ("nonsaturating", "minimax"):
        t = toys.gaussian_gan(seed=0, g_loss=loss)
        before = [p.data.copy() for p in t.G.parameters() + t.D.parameters()]
        stats = t.step()
        after = [p.data for p in t.G.parameters() + t.D.parameters()]
        assert all(not np.array_equal(a, b) for a, b in zip(before, after)), loss
        assert set(stats) == {"d_loss", "d_real", "d_fake", "g_loss"}


def test_a_sampled_step_draws_z_then_x_from_the_one_generator():
    """D's step sees G(z) for the first m draws and x for the next m, G's step
    fresh z after them: Algorithm 1's order, all from ``generator``."""
    t = toys.gaussian_gan(seed=3, batch_size=5)
    replay = np.random.default_rng(0)
    replay.bit_generator.state = t.rng_z.bit_generator.state
    z_d = toys.noise()(5, replay)
    x = toys.gaussian()(5, replay)
    z_g = toys.noise()(5, replay)
    seen = []
    G_forward, D_forward = t.G.forward, t.D.forward
    t.G.forward = lambda z: (seen.append(("G", np.array(z.data if hasattr(z, "data") else z))),
                             G_forward(z))[1]
    t.D.forward = lambda v: (seen.append(("D", np.array(v.data if hasattr(v, "data") else v))),
                             D_forward(v))[1]
    t.step()
    assert [w for w, _ in seen] == ["G", "D", "D", "G", "D"]
    np.testing.assert_array_equal(seen[0][1], z_d)
    np.testing.assert_array_equal(seen[1][1], x)
    np.testing.assert_array_equal(seen[3][1], z_g)
    assert t.rng_z is t.rng_data
    assert t.rng_z.bit_generator.state == replay.bit_generator.state


def test_d_only_steps_leave_g_alone_and_count():
    t = toys.gaussian_gan(seed=0)
    g0 = [p.data.copy() for p in t.G.parameters()]
    d0 = [p.data.copy() for p in t.D.parameters()]
    for _ in range(3):
        assert "g_loss" not in t.step(d_only=True)
    assert all(np.array_equal(a, p.data) for a, p in zip(g0, t.G.parameters()))
    assert not any(np.array_equal(a, p.data) for a, p in zip(d0, t.D.parameters()))
    assert t.step_count == 3 and "g_loss" in t.step()
    G, D = models.paper_mnist(0)
    simultaneous = train.GANTrainer(G, D, np.zeros((8, 784), "float32"), batch_size=8)
    with pytest.raises(ValueError, match="d_only"):
        simultaneous.step(simultaneous.data, d_only=True)


def test_each_player_keeps_its_own_lr_schedule():
    """A pair of schedules: G's and D's learning rates at every step, over k D steps
    per G step; the run's second half decays both to 0."""
    steps, k = 10, 2
    t = toys.gaussian_gan(seed=0, steps=steps, k=k, lr_d=2e-3, lr_g=5e-4)
    seen = []
    for _ in range(steps * k):
        t.step()
        seen.append((t.opt_g.lr, t.opt_d.lr))
    for s, (lr_g, lr_d) in enumerate(seen):
        f = toys.lr_factor(s // k, steps)
        assert (lr_g, lr_d) == (f * 5e-4, f * 2e-3)
    assert seen[0] == (5e-4, 2e-3) and seen[-1][0] == pytest.approx(5e-4 / 5)
    assert toys.lr_factor(5, 10) == 1.0 and toys.lr_factor(9, 10) == pytest.approx(0.2)


def test_a_sampler_has_no_epochs_and_its_batches_are_checked():
    t = toys.gaussian_gan(seed=0, batch_size=4)
    with pytest.raises(ValueError, match="sampler"):
        t.train_epoch()
    t.data = lambda n, rng: np.full((n, 1), np.nan, "float32")
    state = t.rng_z.bit_generator.state
    with pytest.raises(train.NonFiniteError, match="NaN"):
        t.step()
    assert t.rng_z.bit_generator.state == state and t.step_count == 0     # nothing changed
    t.data = lambda n, rng: np.zeros((0, 1), "float32")
    with pytest.raises(ValueError, match="m >= 1"):
        t.step()
    with pytest.raises(ValueError, match="Generator"):
        train.GANTrainer(t.G, t.D, toys.gaussian(), generator=0)


def test_an_array_trainer_needs_its_batch():
    G, D = models.paper_mnist(0)
    t = train.GANTrainer(G, D, np.zeros((8, 784), "float32"), batch_size=8)
    with pytest.raises(ValueError, match="x is needed"):
        t.step()
    assert t.batches_left() == 1


def test_sampled_trainer_resumes_bit_for_bit():
    a = toys.gaussian_gan(seed=1, steps=20)
    for _ in range(5):
        a.step()
    state = a.state_dict()
    assert state["order"] is None
    b = toys.gaussian_gan(seed=2, steps=20)
    b.load_state_dict(state)
    for _ in range(5):
        a.step(), b.step()
    for p, q in zip(a.G.parameters() + a.D.parameters(), b.G.parameters() + b.D.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    state["order"] = np.arange(4)
    with pytest.raises(ValueError, match="sampler"):
        b.load_state_dict(state)


def test_noise_is_the_models_prior_in_float32():
    for prior in models.Z_PRIORS:
        z = toys.noise(prior, dim=3)(1000, np.random.default_rng(0))
        ref = models.sample_z(1000, np.random.default_rng(0), dim=3, dtype="float64", prior=prior)
        assert z.dtype == np.float32 and z.shape == (1000, 3)
        np.testing.assert_array_equal(z, ref.astype("float32"))
    assert np.abs(toys.noise("uniform")(1000, np.random.default_rng(0))).max() <= models.Z_RANGE
    with pytest.raises(ValueError, match="prior"):
        toys.noise("cauchy")


def test_gaussian_data_and_discriminate():
    x = toys.gaussian(4.0, 1.25)(200_000, np.random.default_rng(0))
    assert x.shape == (200_000, 1) and x.dtype == np.float32
    assert abs(x.mean() - 4.0) < 0.01 and abs(x.std() - 1.25) < 0.01
    t = toys.gaussian_gan(seed=0)
    p = toys.discriminate(t.D, [0.0, 4.0, 8.0])
    logits = t.D(np.array([[0.0], [4.0], [8.0]], "float32")).numpy().ravel()
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-6)


def test_mlp_is_linear_tanh_linear():
    net = toys.mlp([1, 4, 3, 2], np.random.default_rng(0))
    assert [type(m).__name__ for m in net] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert [tuple(p.shape) for p in net.parameters()] == [(1, 4), (4,), (4, 3), (3,), (3, 2), (2,)]
    assert net(np.zeros((5, 1), "float32")).shape == (5, 2)


def test_replacing_an_optimizer_keeps_the_trainer_working():
    t = toys.gaussian_gan(seed=0, g_loss="minimax")
    t.opt_g = optim.SGD(t.G.parameters(), lr=0.01, momentum=0.5)
    g0 = [p.data.copy() for p in t.G.parameters()]
    t.step()
    assert not any(np.array_equal(a, p.data) for a, p in zip(g0, t.G.parameters()))
