"""The GAN trainer: each player learns, updates equal hand-built ones, resume is exact."""
import re

import numpy as np
import pytest

import npgan
from npgan import checkpoint, models, optim, train
from npgan.tensor import Tensor
from test_checkpoint import rewrite


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
    # Rounding bound, float64: p + v rounds once (<= eps |p|, and after - before is
    # exact); the two gradients sum the same terms in different orders through
    # fewer than K = 1000 products (widths and batch here add up to ~100), so
    # they differ by <= K eps |terms|, taken as K eps max|g| (10x spare for cancellation).
    eps = np.finfo(np.float64).eps
    for i, g in enumerate(gg + gd):
        atol = eps * np.abs(before[i]).max() + lr * 1000 * eps * np.abs(g).max()
        np.testing.assert_allclose(after[i] - before[i], -lr * g, rtol=0, atol=atol,
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


def _adam_g_trainer(simultaneous=True, k=1, decays=(0.5, 0.9)):
    """G trained by Adam (lr 0.01): every weight moves ~0.01 a step, so the
    moving averages differ from G by far more than float32 rounding."""
    G, D, data = tiny()
    return train.GANTrainer(G, D, data, batch_size=8, k=k, simultaneous=simultaneous,
                            opt_g=optim.Adam(G.parameters(), lr=0.01), ema_decays=decays, seed=0)


@pytest.mark.parametrize("simultaneous,k", [(True, 1), (False, 1), (False, 3)])
def test_ema_matches_closed_form_on_every_parameter(simultaneous, k):
    """avg <- d avg + (1 - d) w after each G step only (sequential k = 3: steps
    3 and 6), for every parameter and both decays, within float32 rounding."""
    t = _adam_g_trainer(simultaneous, k)
    w0 = [p.data.astype(np.float64) for p in t.G.parameters()]
    expect = {d: list(w0) for d in t.emas}
    scale = [np.abs(w).max() for w in w0]
    updates = 0
    for i in range(6):
        t.step(t.data[:8])
        if simultaneous or (i + 1) % k == 0:
            updates += 1
            for d in expect:
                expect[d] = [d * e + (1 - d) * p.data.astype(np.float64)
                             for e, p in zip(expect[d], t.G.parameters())]
        scale = [max(s, float(np.abs(p.data).max())) for s, p in zip(scale, t.G.parameters())]
    assert updates == (6 if simultaneous else 6 // k)
    eps = np.finfo(np.float32).eps
    for d, e in expect.items():
        for j, (avg, want, w) in enumerate(zip(t.emas[d].avg, e, w0)):
            # one float32 update, avg + (1-d)(w - avg): 3 roundings of terms <= 2 scale
            atol = updates * 6 * eps * scale[j]
            assert np.abs(want - w).max() > 1000 * atol, "the averages must move visibly"
            np.testing.assert_allclose(avg, want, rtol=0, atol=atol,
                                       err_msg=f"decay {d}, parameter {j}")


def test_averaged_generator_is_a_copy_of_the_averages():
    t = _adam_g_trainer()
    for _ in range(3):
        t.step(t.data[:8])
    template = models.Generator(z_dim=5, hidden=16, out=12, rng=np.random.default_rng(99))
    out = t.averaged_generator(0.9, template)
    assert out is template
    avg = t.emas[0.9].avg
    for p, a in zip(template.parameters(), avg):
        np.testing.assert_array_equal(p.data, a)
        assert not np.shares_memory(p.data, a)
    kept = [a.copy() for a in avg]
    template.parameters()[0].data += 1.0              # using the copy leaves the averages alone
    for a, b in zip(avg, kept):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(t.generate(4, G=template), t.generate(4))
    with pytest.raises(ValueError, match="shapes"):
        t.averaged_generator(0.9, models.Generator(z_dim=5, hidden=8, out=12))


def test_sequential_g_step_draws_fresh_noise():
    """Algorithm 1: G's step samples its own minibatch of noise."""
    t = make(simultaneous=False, k=1, ema=())
    seen, forward = [], t.G.forward

    def spy(z, *a, **kw):
        seen.append(np.array(z.data if isinstance(z, Tensor) else z, copy=True))
        return forward(z, *a, **kw)
    t.G.forward = spy
    rng = np.random.default_rng()
    rng.bit_generator.state = t.rng_z.bit_generator.state
    z_d, z_g = t.sample_z(8, rng), t.sample_z(8, rng)
    t.step(t.data[:8])
    assert len(seen) == 2
    np.testing.assert_array_equal(seen[0], z_d)        # D's fake batch
    np.testing.assert_array_equal(seen[1], z_g)        # G's step: the next draw
    assert t.rng_z.bit_generator.state == rng.bit_generator.state


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


# ----------------------------------------------------------------------------- refusals

def frozen(t):
    """The trainer's whole state (state_dict: parameters, optimizer buffers, lr and
    momentum, averages, RNGs, counters), arrays as bytes: equal iff bit-identical."""
    def enc(o):
        if isinstance(o, np.ndarray):
            return ("array", o.dtype.str, o.shape, o.tobytes())
        if isinstance(o, dict):
            return {k: enc(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [enc(v) for v in o]
        return o
    return enc(t.state_dict())


def _nan_backward(x):
    """Identity forward, NaN backward: a finite loss with non-finite gradients."""
    return Tensor.make(x.data, (x,), lambda g: (g * np.nan,))


def _nan_pixel(t, x):
    x[2, 3] = np.nan


def _inf_pixel(t, x):
    x[0, 0] = np.inf


def _nan_d_grad(t, x):
    d_loss = t._d_loss
    t._d_loss = lambda l_real, l_fake: d_loss(_nan_backward(l_real), l_fake)


def _nan_g_grad(t, x):
    g_loss = t._g_loss
    t._g_loss = lambda l: g_loss(_nan_backward(l))


def _inf_g_loss(t, x):
    g_loss = t._g_loss
    t._g_loss = lambda l: g_loss(l) * np.inf


@pytest.mark.parametrize("fault", [_nan_pixel, _inf_pixel, _nan_d_grad, _nan_g_grad, _inf_g_loss])
@pytest.mark.parametrize("simultaneous,k", [(True, 1), (False, 1), (False, 2)])
def test_non_finite_step_changes_nothing(fault, simultaneous, k):
    """The 4th step fails (a G step in every mode: sequential, its D step came
    first and is undone); the trainer is bit for bit as before it, and a retry
    with a clean batch equals a trainer that never saw the fault."""
    def build():
        t = make(simultaneous, k, ema=(0.9, 0.5))
        for _ in range(3):
            t.step(t.data[:8])
        return t
    t, twin = build(), build()
    before = frozen(t)
    x = t.data[8:16].copy()
    fault(t, x)
    with pytest.raises(train.NonFiniteError, match=r"step 4: .*NaN or inf.*nothing was updated"):
        with np.errstate(invalid="ignore", over="ignore"):
            t.step(x)
    assert frozen(t) == before
    for name in ("_d_loss", "_g_loss"):
        vars(t).pop(name, None)
    t.step(t.data[8:16])
    twin.step(twin.data[8:16])
    assert frozen(t) == frozen(twin)


def test_data_changed_after_construction_is_refused_where_read():
    t = make()
    peek = np.random.default_rng()
    peek.bit_generator.state = t.rng_data.bit_generator.state
    rows = peek.permutation(len(t.data))[16:24][[1, 6]]   # two rows of the 3rd batch
    t.data[rows, 3] = [np.inf, np.nan]                  # the trainer shares the caller's array
    snaps = []
    with pytest.raises(train.NonFiniteError, match=re.escape(f"step 3: data rows {rows.tolist()} hold")):
        t.train_epoch(on_step=lambda tr, stats: snaps.append(frozen(tr)))
    assert len(snaps) == 2 and frozen(t) == snaps[-1]   # as after the last good step
    with pytest.raises(train.NonFiniteError):
        t.train_epoch()                                 # the same batch again: refused again
    assert frozen(t) == snaps[-1]


def test_edge_sizes_are_refused_with_their_name():
    G, D, data = tiny()
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size"):
            train.GANTrainer(G, D, data, batch_size=bad)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="k "):
            train.GANTrainer(G, D, data, batch_size=8, k=bad)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="ema_decays"):
            train.GANTrainer(G, D, data, batch_size=8, ema_decays=(0.9, bad))
    t = make()
    before = frozen(t)
    for x in (t.data[:0], t.data[0], t.data[:2, :, None]):
        with pytest.raises(ValueError, match="x must be a batch"):
            t.step(x)
    assert frozen(t) == before
    for n in (0, -3, 2.0, None):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            t.generate(n)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        t.generate(5, batch=0)
    assert t.generate(1).shape == (1, 12)
    assert t.generate(7, batch=3).shape == (7, 12)
    np.testing.assert_array_equal(t.generate(7, batch=3), t.generate(7))


# ----------------------------------------------------------------------------- loading

def test_load_state_dict_is_all_or_nothing():
    src = make(ema=(0.9,))
    src.step(src.data[:8])
    state = src.state_dict()

    other_ema = make(seed=1, ema=(0.5,))               # mismatched moving-average decays
    before = frozen(other_ema)
    with pytest.raises(checkpoint.CheckpointError, match=r"moving averages \['0.9'\].*\['0.5'\]"):
        other_ema.load_state_dict(state)
    assert frozen(other_ema) == before

    G, D, data = tiny(seed=1)                           # Adam trainer, SGD checkpoint
    adam = train.GANTrainer(G, D, data, batch_size=8, ema_decays=(0.9,),
                            opt_g=optim.Adam(G.parameters()), opt_d=optim.Adam(D.parameters()))
    before = frozen(adam)
    with pytest.raises(checkpoint.CheckpointError, match=r"opt_g: Adam state has keys"):
        adam.load_state_dict(state)
    assert frozen(adam) == before

    t = make(seed=1)
    before = frozen(t)
    for edit, match in [
            (lambda s: s["opt_d"]["hyper"].update(lr=-1.0), "opt_d: .*lr must be >= 0"),
            (lambda s: s["opt_g"]["hyper"].update(foo=1), "opt_g: .*hyper-parameters"),
            (lambda s: s["ema"]["0.9"].pop(), "ema 0.9"),
            (lambda s: s["D"]["y.weight"].fill(np.nan), "D 'y.weight' has NaN"),
            (lambda s: s["G"].pop("h0.bias"), r"G: missing keys \['h0.bias'\]"),
            (lambda s: s["opt_d"]["velocity"][0].fill(np.inf), r"velocity'\[0\] has NaN"),
            (lambda s: s["rng"]["z"].update(state="x"), "rng z"),
            (lambda s: s.update(order=np.arange(3)), "permutation"),
            (lambda s: s.update(G=[1, 2]), "G must be a dict")]:
        s = src.state_dict()
        edit(s)
        with pytest.raises(checkpoint.CheckpointError, match=match):
            t.load_state_dict(s)
        assert frozen(t) == before
    t.load_state_dict(state)
    assert frozen(t) == frozen(src)


def test_load_state_dict_undoes_a_part_that_fails_late(monkeypatch):
    """A failure the checks did not foresee (here D's own loader) undoes G."""
    src, t = make(), make(seed=1)
    src.step(src.data[:8])
    before = frozen(t)

    def refuse(state):
        raise ValueError("refused late")
    monkeypatch.setattr(t.D, "load_state_dict", refuse)
    with pytest.raises(checkpoint.CheckpointError, match="refused late"):
        t.load_state_dict(src.state_dict())
    assert frozen(t) == before


def test_checkpoint_with_right_digest_and_wrong_state_is_refused_by_the_trainer(tmp_path):
    a = make()
    path = checkpoint.save(str(tmp_path / "ck.npz"), a.state_dict(), {"seed": 0})

    def g_as_list(info):
        info["state"]["__dict__"][0][1] = [1, 2, 3]
        return info
    bad = rewrite(path, str(tmp_path / "bad.npz"), g_as_list)
    t = make(seed=1)
    before = frozen(t)
    with pytest.raises(checkpoint.CheckpointError, match="G must be a dict"):
        t.load_state_dict(checkpoint.load(bad)["state"])
    assert frozen(t) == before


def test_average_state_dicts_is_the_elementwise_mean_in_the_first_dtype():
    rng = np.random.default_rng(0)
    states = [{"w": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(4)}
              for _ in range(3)]
    avg = train.average_state_dicts(iter(states))            # any iterable
    assert avg["w"].dtype == np.float32 and avg["b"].dtype == np.float64
    np.testing.assert_allclose(avg["w"], np.mean([s["w"] for s in states], axis=0), rtol=1e-6)
    np.testing.assert_allclose(avg["b"], (states[0]["b"] + states[1]["b"] + states[2]["b"]) / 3,
                               rtol=1e-14)
    assert all(np.array_equal(train.average_state_dicts([states[0]])[k], states[0][k]) for k in "wb")
    with pytest.raises(ValueError, match="no state_dicts"):
        train.average_state_dicts([])
    with pytest.raises(ValueError, match="names"):
        train.average_state_dicts([states[0], {"w": states[1]["w"]}])
    with pytest.raises(ValueError, match="'w' is"):
        train.average_state_dicts([states[0], {"w": states[1]["w"][:2], "b": states[1]["b"]}])
    bad = {"w": states[1]["w"].copy(), "b": states[1]["b"]}
    bad["w"][1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train.average_state_dicts([states[0], bad])
