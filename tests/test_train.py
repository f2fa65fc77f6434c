"""The GAN trainer: each player learns, updates equal hand-built ones, resume is exact."""
import os

import numpy as np
import pytest

import npgan
from npgan import checkpoint, models, optim, train
from npgan.tensor import Tensor


def tiny(seed=0, n=40, dim=12, dtype="float32"):
    """A small G/D pair of the paper's shapes (maxout D with dropout) and data."""
    rng = np.random.default_rng(seed)
    G = models.Generator(z_dim=5, hidden=16, out=dim, rng=rng, dtype=dtype)
    D = models.Discriminator(inp=dim, units=6, pieces=3, irange=0.05, rng=rng, dtype=dtype)
    data = rng.uniform(0, 1, (n, dim)).astype(dtype)
    return G, D, data


def make(simultaneous=True, k=1, seed=0, g_loss="nonsaturating", ema=(0.9,)):
    G, D, data = tiny(seed)
    lr, mom = train.paper_schedules()
    return train.GANTrainer(G, D, data, batch_size=8, k=k, simultaneous=simultaneous, g_loss=g_loss,
                            lr_schedule=lr, momentum_schedule=mom, ema_decays=ema, seed=seed)


def params(t):
    return [p.data.copy() for p in t.G.parameters() + t.D.parameters()]


@pytest.mark.parametrize("simultaneous", [True, False])
def test_every_parameter_of_both_players_moves(simultaneous):
    t = make(simultaneous)
    before = params(t)
    t.step(t.data[:8])
    after = params(t)
    names = [n for n, _ in t.G.named_parameters()] + [n for n, _ in t.D.named_parameters()]
    for name, a, b in zip(names, before, after):
        assert not np.array_equal(a, b), f"{name} did not change"


def _manual_grads(t, x, z, rng_state, g_loss):
    """Gradients of the paper's losses built independently: separate graphs.
    D's loss is halved, as the authors' AdversaryCost2."""
    G, D = t.G, t.D
    for p in G.parameters() + D.parameters():
        p.grad = None
    D.dropout_rng.bit_generator.state = rng_state
    fake = G(Tensor(z))
    lr_, lf = D(Tensor(x)), D(fake.detach())
    (0.5 * ((-lr_).softplus().mean() + lf.softplus().mean())).backward()
    gd = [p.grad.copy() for p in D.parameters()]
    # same dropout masks for G's pass through D as the simultaneous step used
    D.dropout_rng.bit_generator.state = rng_state
    D(Tensor(x))                      # consume the real branch's masks
    for p in D.parameters():
        p.grad = None
    lf = D(G(Tensor(z)))
    loss = (-lf).softplus().mean() if g_loss == "nonsaturating" else -(lf.softplus().mean())
    loss.backward()
    gg = [p.grad.copy() for p in G.parameters()]
    return gd, gg


@pytest.mark.parametrize("g_loss", ["nonsaturating", "minimax"])
def test_simultaneous_step_equals_separately_computed_gradients(g_loss):
    """One SGD step with lr a and momentum m from zero velocity moves each
    parameter by -a * grad: compare with gradients computed from separate graphs
    (D's loss halved as in the authors' code; 2x the gradient fails this)."""
    t = make(True, g_loss=g_loss, ema=())
    t.G.to("float64"), t.D.to("float64")
    t.opt_g.velocity = [None] * len(t.opt_g.params)
    t.opt_d.velocity = [None] * len(t.opt_d.params)
    x = t.data[:8].astype("float64")
    z_state = t.rng_z.bit_generator.state
    z = np.random.default_rng(0)
    z.bit_generator.state = z_state
    zz = z.standard_normal((8, 5))
    d_state = t.D.dropout_rng.bit_generator.state
    before = params(t)
    t.sample_z = lambda n, rng: zz
    gd, gg = _manual_grads(t, x, zz, d_state, g_loss)
    for p, b in zip(t.G.parameters() + t.D.parameters(), before):   # restore
        p.data = b.copy()
    t.D.dropout_rng.bit_generator.state = d_state
    lr = t.lr_schedule(0)
    t.step(x)
    after = params(t)
    nG = len(gg)
    for i, g in enumerate(gg + gd):
        np.testing.assert_allclose(after[i] - before[i], -lr * g, rtol=1e-9, atol=1e-12,
                                   err_msg=f"param {i} ({'G' if i < nG else 'D'})")


def test_sequential_k_steps_update_g_every_kth_step():
    t = make(simultaneous=False, k=3, ema=())
    g0 = [p.data.copy() for p in t.G.parameters()]
    stats = [t.step(t.data[:8]) for _ in range(2)]
    assert all(np.array_equal(a, p.data) for a, p in zip(g0, t.G.parameters()))
    assert all("g_loss" not in s for s in stats)
    s = t.step(t.data[:8])
    assert "g_loss" in s
    assert not np.array_equal(g0[0], t.G.parameters()[0].data)


def test_schedules_are_applied_per_step_and_epoch():
    t = make()
    t.train_epoch()
    assert t.step_count == 5 and t.epoch == 1
    t.step(t.data[:8])
    assert t.opt_d.lr == pytest.approx(0.1 / 1.000004 ** 5, rel=1e-12)
    # pylearn2's MomentumAdjustor(start=1, saturate=250): its counter is 1 during
    # epoch 1 (it runs once before training), c + 1 during epoch c + 1
    assert t.opt_g.momentum == pytest.approx(0.5 + 0.2 * 1 / 249, rel=1e-12)   # 2nd epoch
    t.epoch = 125
    t.step(t.data[:8])
    assert t.opt_g.momentum == pytest.approx(0.5 + 0.2 * 125 / 249, rel=1e-12)
    t.epoch = 249                                      # during the 250th epoch: saturated
    t.step(t.data[:8])
    assert t.opt_g.momentum == pytest.approx(0.7, rel=1e-12)


def test_ema_matches_closed_form():
    t = make(ema=(0.9,))
    w = [t.G.parameters()[0].data.copy()]
    for _ in range(3):
        t.step(t.data[:8])
        w.append(t.G.parameters()[0].data.copy())
    expect = w[0]
    for wi in w[1:]:
        expect = 0.9 * expect + 0.1 * wi
    np.testing.assert_allclose(t.emas[0.9].avg[0], expect, rtol=1e-5, atol=1e-7)


def test_resume_is_bit_identical(tmp_path):
    a = make()
    a.train_epoch()
    a.train_epoch(should_stop=lambda: a._pos == 2)      # stop mid-epoch
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, a.state_dict(), {"seed": 0})
    a.train_epoch()
    a.train_epoch()
    b = make()
    b.load_state_dict(checkpoint.load(path, {"seed": 0})["state"])
    b.train_epoch()
    b.train_epoch()
    for p, q in zip(params(a), params(b)):
        assert np.array_equal(p, q)
    for p, q in zip(a.emas[0.9].avg, b.emas[0.9].avg):
        assert np.array_equal(p, q)
    assert a.history == b.history and a.step_count == b.step_count == 15


def test_checkpoint_refuses_other_config_and_damage(tmp_path):
    a = make()
    a.step(a.data[:8])
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, a.state_dict(), {"seed": 0, "k": 1})
    with pytest.raises(checkpoint.CheckpointError, match="k: checkpoint 1 vs now 2"):
        checkpoint.load(path, {"seed": 0, "k": 2})
    raw = open(path, "rb").read()
    bad = str(tmp_path / "bad.npz")
    with open(bad, "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="damaged|truncated"):
        checkpoint.load(bad)
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    with open(bad, "wb") as f:
        f.write(bytes(flipped))
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(bad)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        checkpoint.load(str(tmp_path / "missing.npz"))


def test_failed_save_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    a = make()
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, a.state_dict(), {"seed": 0})
    good = open(path, "rb").read()

    def broken_savez(f, **members):
        f.write(b"garbage")
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.save(path, a.state_dict(), {"seed": 0})
    assert open(path, "rb").read() == good
    assert os.listdir(tmp_path) == ["ck.npz"]        # no temporary left behind


def test_trainer_refuses_bad_data():
    G, D, data = tiny()
    with pytest.raises(ValueError, match="NaN"):
        bad = data.copy()
        bad[0, 0] = np.nan
        train.GANTrainer(G, D, bad, batch_size=8)
    with pytest.raises(ValueError, match="float array"):
        train.GANTrainer(G, D, data[0], batch_size=8)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train.GANTrainer(G, D, data[:4], batch_size=8)
    with pytest.raises(ValueError, match="g_loss"):
        train.GANTrainer(G, D, data, batch_size=8, g_loss="wgan")


def test_gaussian_gan_learns_on_paper_networks_shapes():
    """A sanity run: data bright (pixels in [0.75, 0.95]), G starts near 0.5;
    after 500 steps G's samples have moved nearly all the way to the data."""
    t = make(ema=())
    t.data = np.random.default_rng(1).uniform(0.75, 0.95, t.data.shape).astype("float32")
    gap0 = abs(t.generate(200).mean() - t.data.mean())
    for _ in range(100):
        t.train_epoch()
    gap1 = abs(t.generate(200).mean() - t.data.mean())
    assert gap0 > 0.3 and gap1 < 0.1 * gap0


def test_first_step_d_loss_is_ln2_with_the_authors_halved_objective():
    # D's logits start near 0 (weights U(+-0.005)): D = 1/2 on both batches, so the
    # authors' d_obj = 0.5 (ln 2 + ln 2) = ln 2; the paper's un-halved sum is 2 ln 2.
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (200, 784)).astype("float32")
    for scale, expect in ((0.5, np.log(2)), (1.0, 2 * np.log(2))):
        G, D = models.paper_mnist(0, x)
        t = train.GANTrainer(G, D, x, batch_size=100, d_scale=scale)
        assert t.step(x[:100])["d_loss"] == pytest.approx(expect, abs=2e-3)
    with pytest.raises(ValueError, match="d_scale"):
        train.GANTrainer(G, D, x, batch_size=100, d_scale=0)
