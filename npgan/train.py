"""Algorithm 1 of the paper: the GAN trainer, the only module that knows the game.

    for each training iteration:
        for k steps:  sample m noise z and m examples x;
                      ascend  grad_D  1/m sum [log D(x) + log(1 - D(G(z)))]
        sample m noise z;
        descend grad_G  1/m sum log(1 - D(G(z)))      ("minimax" G loss)
           or  ascend grad_G 1/m sum log D(G(z))      ("nonsaturating", the default)

``simultaneous=True`` is what the authors' released code did instead (k = 1):
D and G are both updated from one minibatch and one forward pass.

All losses are computed from D's logits l: log D = -softplus(-l),
log(1 - D) = -softplus(l). D's loss is scaled by ``d_scale``: 0.5 by default,
as the authors' ``AdversaryCost2`` (d_obj = 0.5 (cost(real) + cost(fake))), so
it starts at ln 2; 1.0 is the value function exactly as the paper writes it.
"""
import math

import numpy  # host-side: RNGs, minibatch order, the metric history

from . import backend, models, optim
from .tensor import Tensor, no_grad


class _frozen:
    """Context: these parameters take no gradient in backward() calls within
    (PyTorch's ``requires_grad_(False)`` idiom), so their weight-gradient
    GEMMs are skipped rather than computed and thrown away."""

    def __init__(self, params):
        self.params = list(params)

    def __enter__(self):
        for p in self.params:
            p.requires_grad = False

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad = True


class EMA:
    """Exponential moving average of parameters: w_avg <- d w_avg + (1-d) w,
    after every G step (Polyak averaging). Sample from ``copy_to(G)``."""

    def __init__(self, params, decay):
        self.decay = decay
        self.avg = [p.data.copy() for p in params]

    def update(self, params):
        a = 1.0 - self.decay
        for avg, p in zip(self.avg, params):
            avg += a * (p.data - avg)

    def copy_to(self, module):
        for avg, p in zip(self.avg, module.parameters()):
            p.data = avg.copy()
        return module


class GANTrainer:
    """Trains G and D on ``data`` (N, D) float32 in [0, 1] (host array).

    G: z (m, z_dim) -> samples (m, D); D: x -> logits (m, 1).
    k: D steps per G step (ignored when simultaneous). g_loss:
    "nonsaturating" or "minimax". d_scale: D's loss is d_scale x (BCE(real)
    + BCE(fake)) (0.5: the authors' code). sample_z(n, rng): the noise prior
    (default N(0, I), :func:`npgan.models.z_sampler`). lr_schedule(step) and
    momentum_schedule(epoch) set both optimizers' lr / momentum before every
    step (SGD); ``ema_decays`` keep moving averages of G's weights.
    Every random draw comes from generators owned here (seeded by ``seed``), so
    a run is reproducible and resumable bit for bit.
    """

    def __init__(self, G, D, data, batch_size=100, k=1, simultaneous=True,
                 g_loss="nonsaturating", opt_g=None, opt_d=None, lr_schedule=None,
                 momentum_schedule=None, ema_decays=(), seed=0, sample_z=None, d_scale=0.5):
        if g_loss not in ("nonsaturating", "minimax"):
            raise ValueError(f"g_loss must be 'nonsaturating' or 'minimax', got {g_loss!r}")
        if k < 1:
            raise ValueError(f"k (D steps per G step) must be >= 1, got {k}")
        if not (math.isfinite(d_scale) and d_scale > 0):
            raise ValueError(f"d_scale must be a positive number, got {d_scale!r}")
        data = numpy.asarray(data)
        if data.ndim != 2 or data.dtype.kind != "f":
            raise ValueError(f"data must be a float array (N, D), got {data.dtype} {data.shape}")
        if len(data) < batch_size:
            raise ValueError(f"data has {len(data)} rows, fewer than one batch of {batch_size}")
        if not numpy.all(numpy.isfinite(data)):
            raise ValueError("data contains NaN or inf")
        self.G, self.D, self.data = G, D, data
        self.batch_size, self.k, self.simultaneous, self.g_loss = batch_size, k, simultaneous, g_loss
        self.d_scale = float(d_scale)
        self.opt_g = opt_g or optim.SGD(G.parameters(), lr=0.1, momentum=0.5)
        self.opt_d = opt_d or optim.SGD(D.parameters(), lr=0.1, momentum=0.5)
        self.lr_schedule, self.momentum_schedule = lr_schedule, momentum_schedule
        self.emas = {d: EMA(G.parameters(), d) for d in ema_decays}
        seeds = numpy.random.SeedSequence(seed).spawn(2)
        self.rng_data = numpy.random.default_rng(seeds[0])   # minibatch order
        self.rng_z = numpy.random.default_rng(seeds[1])      # the noise prior
        self.sample_z = sample_z or models.z_sampler("gaussian", getattr(G, "z_dim", models.Z_DIM))
        self.step_count, self.epoch = 0, 0
        self._order, self._pos = None, 0                      # position inside the epoch
        self.history = []                                     # one dict per epoch

    # -- one update ---------------------------------------------------------------
    def _schedules(self):
        for opt in (self.opt_g, self.opt_d):
            if self.lr_schedule is not None:
                opt.lr = self.lr_schedule(self.step_count)
            if self.momentum_schedule is not None and hasattr(opt, "momentum"):
                opt.momentum = self.momentum_schedule(self.epoch)

    def _d_loss(self, l_real, l_fake):
        # -d_scale [log D(x) + log(1 - D(G(z)))] = d_scale (softplus(-l_real) + softplus(l_fake))
        loss = (-l_real).softplus().mean() + l_fake.softplus().mean()
        return loss * self.d_scale if self.d_scale != 1.0 else loss

    def _g_loss(self, l_fake):
        if self.g_loss == "nonsaturating":      # minimise -log D(G(z))
            return (-l_fake).softplus().mean()
        return -(l_fake.softplus().mean())      # minimise log(1 - D(G(z)))

    def step(self, x):
        """One update from the real minibatch x (m, D) (backend or host array).
        Simultaneous: D and G from this batch at once. Otherwise one D step;
        every k-th D step is followed by a G step. Returns the batch stats."""
        self._schedules()
        x = Tensor(backend.asarray(x))
        m = x.shape[0]
        z = self.sample_z(m, self.rng_z)
        if self.simultaneous:
            fake = self.G(z)
            l_real, l_fake = self.D(x), self.D(fake)       # one graph, both players
            d_loss, g_loss = self._d_loss(l_real, l_fake), self._g_loss(l_fake)
            self.opt_d.zero_grad()
            self.opt_g.zero_grad()
            with _frozen(self.G.parameters()):
                d_loss.backward()                          # D's gradients; G's part is pruned
            with _frozen(self.D.parameters()):
                g_loss.backward()                          # G's gradients, through D
            self.opt_d.step()
            self.opt_g.step()
            g_updated = True
        else:
            with no_grad():
                fake = self.G(z)
            l_real, l_fake = self.D(x), self.D(fake)
            d_loss = self._d_loss(l_real, l_fake)
            self.opt_d.zero_grad()
            d_loss.backward()
            self.opt_d.step()
            g_loss, g_updated = None, (self.step_count + 1) % self.k == 0
            if g_updated:
                z = self.sample_z(m, self.rng_z)
                with _frozen(self.D.parameters()):
                    l_gen = self.D(self.G(z))
                    g_loss = self._g_loss(l_gen)
                    self.opt_g.zero_grad()
                    g_loss.backward()
                self.opt_g.step()
        if g_updated:
            for ema in self.emas.values():
                ema.update(self.G.parameters())
        self.step_count += 1
        xp = backend.xp
        stats = {"d_loss": float(d_loss.item()),
                 "d_real": float(xp.mean(_sigmoid(l_real.data))),
                 "d_fake": float(xp.mean(_sigmoid(l_fake.data)))}
        if g_loss is not None:
            stats["g_loss"] = float(g_loss.item())
        if not all(math.isfinite(v) for v in stats.values()):
            raise FloatingPointError(f"training diverged at step {self.step_count}: {stats}")
        return stats

    # -- epochs ---------------------------------------------------------------------
    def batches_per_epoch(self):
        return len(self.data) // self.batch_size

    def train_epoch(self, on_step=None, should_stop=None):
        """Run (the rest of) one epoch over a fresh permutation of the data.
        on_step(trainer, stats) is called after every step; should_stop() may
        end the epoch early (state stays resumable). Returns the epoch's mean
        stats, or None if stopped early."""
        n = self.batches_per_epoch()
        if self._order is None:
            self._order, self._pos = self.rng_data.permutation(len(self.data)), 0
            self._sums = {}
        while self._pos < n:
            idx = self._order[self._pos * self.batch_size:(self._pos + 1) * self.batch_size]
            stats = self.step(self.data[idx])
            self._pos += 1
            for key, v in stats.items():
                s, c = self._sums.get(key, (0.0, 0))
                self._sums[key] = (s + v, c + 1)
            if on_step is not None:
                on_step(self, stats)
            if should_stop is not None and should_stop():
                return None
        means = {key: s / c for key, (s, c) in self._sums.items()}
        self.epoch += 1
        self._order, self._pos = None, 0
        record = {"epoch": self.epoch, "step": self.step_count, **means}
        self.history.append(record)
        return record

    # -- sampling -------------------------------------------------------------------
    def generate(self, n, G=None, rng=None, batch=1000):
        """n samples (host float32 (n, D)) from G (default self.G) in eval mode,
        z from ``rng`` (default a fixed seed, so evaluations are comparable)."""
        G = G or self.G
        rng = rng if rng is not None else numpy.random.default_rng(12345)
        out = []
        with no_grad():
            for i in range(0, n, batch):
                out.append(backend.to_numpy(G(self.sample_z(min(batch, n - i), rng)).data))
        return numpy.concatenate(out)

    def averaged_generator(self, decay, template):
        """``template`` (a G-shaped module) loaded with the EMA weights."""
        return self.emas[decay].copy_to(template)

    # -- state (for npgan.checkpoint) ----------------------------------------------------
    def state_dict(self):
        """Everything needed to continue bit for bit; host arrays + plain values."""
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "ema": {str(d): [backend.to_numpy(a).copy() for a in e.avg] for d, e in self.emas.items()},
            "rng": {"data": self.rng_data.bit_generator.state, "z": self.rng_z.bit_generator.state,
                    "dropout": [r.bit_generator.state for r in _dropout_rngs(self.D)]},
            "step": self.step_count, "epoch": self.epoch,
            "order": None if self._order is None else self._order.copy(), "pos": self._pos,
            "sums": dict(getattr(self, "_sums", {})) if self._order is not None else {},
            "history": list(self.history),
        }

    def load_state_dict(self, s):
        self.G.load_state_dict(s["G"])
        self.D.load_state_dict(s["D"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        if sorted(map(str, self.emas)) != sorted(s["ema"]):
            raise ValueError(f"checkpoint has moving averages {sorted(s['ema'])}, "
                             f"this trainer keeps {sorted(map(str, self.emas))}")
        for d, e in self.emas.items():
            e.avg = [backend.asarray(a).copy() for a in s["ema"][str(d)]]
        self.rng_data.bit_generator.state = s["rng"]["data"]
        self.rng_z.bit_generator.state = s["rng"]["z"]
        rngs = _dropout_rngs(self.D)
        if len(rngs) != len(s["rng"]["dropout"]):
            raise ValueError("checkpoint's dropout generators do not match this D")
        for r, st in zip(rngs, s["rng"]["dropout"]):
            r.bit_generator.state = st
        self.step_count, self.epoch = int(s["step"]), int(s["epoch"])
        self._order = None if s["order"] is None else numpy.asarray(s["order"])
        self._pos = int(s["pos"])
        self._sums = {k: tuple(v) for k, v in s["sums"].items()}
        self.history = list(s["history"])


def _sigmoid(a):
    xp = backend.xp
    return 1.0 / (1.0 + xp.exp(-xp.clip(a, -60, 60)))


def _dropout_rngs(module):
    """The distinct numpy Generators used by module's Dropout layers, in order."""
    seen, out = set(), []
    for m in module.modules():
        r = getattr(m, "rng", None)
        if isinstance(r, numpy.random.Generator) and id(r) not in seen:
            seen.add(id(r))
            out.append(r)
    return out


def paper_schedules():
    """The paper's lr decay (0.1 / 1.000004^t, floor 1e-6) and momentum ramp
    (.5 -> .7, pylearn2's MomentumAdjustor(start=1, saturate=250)).

    The trainer evaluates the ramp with the number of epochs completed, c.
    pylearn2 calls the adjustor once before training and after every epoch, so
    its counter reads c + 1 during epoch c + 1 and the momentum is
    .5 + .2 min(c / 249, 1): LinearRamp(.5, .7, 0, 249) in completed epochs
    (.7 from the 250th epoch on)."""
    return optim.ExponentialDecay(0.1, 1.000004, 1e-6), optim.LinearRamp(0.5, 0.7, 0, 249)
