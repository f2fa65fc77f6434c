"""Algorithm 1 of the paper: the GAN trainer, the only module that knows the game.

    for each training iteration:
        for k steps:  sample m noise z and m examples x;
                      ascend  grad_D  1/m sum [log D(x) + log(1 - D(G(z)))]
        sample m noise z;
        descend grad_G  1/m sum log(1 - D(G(z)))      ("minimax" G loss)
           or  ascend grad_G 1/m sum log D(G(z))      ("nonsaturating", the default)

``simultaneous=True`` is what the authors' released code did instead (k = 1):
D and G are both updated from one minibatch and one forward pass.

All losses are computed from D's logits l by
``F.binary_cross_entropy_with_logits``: log D = -softplus(-l),
log(1 - D) = -softplus(l). D's loss is scaled by ``d_scale``: 0.5 by default,
as the authors' ``AdversaryCost2`` (d_obj = 0.5 (cost(real) + cost(fake))), so
it starts at ln 2; 1.0 is the value function exactly as the paper writes it.
"""
import math
import numbers

import numpy  # host-side: RNGs, minibatch order, the metric history

from . import _kernels as K
from . import backend, models, optim, sampling
from . import functional as F
from .checkpoint import CheckpointError
from .tensor import Tensor, no_grad


class NonFiniteError(FloatingPointError):
    """A step refused for NaN or inf in its batch, a loss or a gradient. Raised
    before anything was updated: the trainer is exactly as before the call."""


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


class frozen:
    """``with frozen(params):`` these parameters take no gradient in backward()
    calls within; their ``requires_grad`` flags are restored on exit."""

    def __init__(self, params):
        self.params = list(params)

    def __enter__(self):
        self.flags = [p.requires_grad for p in self.params]
        for p in self.params:
            p.requires_grad = False

    def __exit__(self, *exc):
        for p, f in zip(self.params, self.flags):
            p.requires_grad = f


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
        """Load copies of the averages into ``module`` (G-shaped, else ValueError); returns it."""
        params = module.parameters()
        shapes = [tuple(a.shape) for a in self.avg]
        if [p.shape for p in params] != shapes:
            raise ValueError(f"copy_to: the module's parameter shapes {[p.shape for p in params]} "
                             f"are not the averages' {shapes}")
        for avg, p in zip(self.avg, params):
            p.data = avg.copy()
        return module


def average_state_dicts(states):
    """The element-wise mean of state_dicts (name -> host array) with the same names
    and shapes: uniform averaging of weights saved along one run (snapshots of G, or of
    its EMA), as stochastic weight averaging does (Izmailov et al., 2018). Summed in
    float64, returned in the first dict's dtypes. Fewer than one dict, other names or
    shapes, NaN or inf: ValueError."""
    states = list(states)
    if not states:
        raise ValueError("average_state_dicts: no state_dicts to average")
    first = states[0]
    for i, s in enumerate(states[1:], 1):
        if set(s) != set(first):
            raise ValueError(f"average_state_dicts: state {i} has names {sorted(s)}, "
                             f"state 0 has {sorted(first)}")
        for k in first:
            if numpy.shape(s[k]) != numpy.shape(first[k]):
                raise ValueError(f"average_state_dicts: {k!r} is {numpy.shape(s[k])} in state {i}, "
                                 f"{numpy.shape(first[k])} in state 0")
    out = {}
    for k, v in first.items():
        total = numpy.zeros(numpy.shape(v), dtype=numpy.float64)
        for s in states:
            total += numpy.asarray(s[k], dtype=numpy.float64)
        if not numpy.isfinite(total).all():
            raise ValueError(f"average_state_dicts: {k!r} has NaN or inf")
        out[k] = (total / len(states)).astype(numpy.asarray(v).dtype)
    return out


class GANTrainer:
    """Trains G and D on ``data``: a host array (N, D) float in [0, 1] (epochs
    over a permutation: :meth:`train_epoch`), or a sampler ``data(m, rng) -> (m, D)``
    float array (a game without epochs: :meth:`step` draws each batch).

    G: z (m, z_dim) -> samples (m, D); D: x -> logits (m, 1).
    k: D steps per G step (ignored when simultaneous). g_loss:
    "nonsaturating" or "minimax". d_scale: D's loss is d_scale x (BCE(real)
    + BCE(fake)) (0.5: the authors' code). sample_z(n, rng): the noise prior
    (default N(0, I), :func:`npgan.models.z_sampler`). lr_schedule(step) sets
    both optimizers' lr before every step (a pair (for G, for D): each its
    own); momentum_schedule(epoch) their momentum (SGD); ``ema_decays`` keep
    moving averages of G's weights.
    Every random draw comes from generators owned here, seeded by ``seed`` (or
    ``generator``: one numpy Generator for both the batches and z, the single
    stream of a script that draws everything from one rng), so a run is
    reproducible and resumable bit for bit.

    An array ``data`` is not copied (MNIST would double in memory):
    :meth:`train_epoch` checks each batch as it reads it, and :meth:`step` refuses
    a batch, loss or gradient with NaN or inf (:class:`NonFiniteError`) before
    changing anything.
    """

    def __init__(self, G, D, data, batch_size=100, k=1, simultaneous=True,
                 g_loss="nonsaturating", opt_g=None, opt_d=None, lr_schedule=None,
                 momentum_schedule=None, ema_decays=(), seed=0, sample_z=None, d_scale=0.5,
                 generator=None):
        if g_loss not in ("nonsaturating", "minimax"):
            raise ValueError(f"g_loss must be 'nonsaturating' or 'minimax', got {g_loss!r}")
        k = _positive_int("k (D steps per G step)", k)
        batch_size = _positive_int("batch_size", batch_size)
        if not (math.isfinite(d_scale) and d_scale > 0):
            raise ValueError(f"d_scale must be a positive number, got {d_scale!r}")
        if not callable(data):
            data = numpy.asarray(data)
            if data.ndim != 2 or data.dtype.kind != "f":
                raise ValueError(f"data must be a float array (N, D) or a sampler, got {data.dtype} "
                                 f"{data.shape}")
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
        for d in ema_decays:
            if isinstance(d, bool) or not isinstance(d, numbers.Real) or not 0 <= d < 1:
                raise ValueError(f"ema_decays must be numbers in [0, 1), got {d!r}")
        self.emas = {d: EMA(G.parameters(), d) for d in ema_decays}
        if generator is not None:
            if not isinstance(generator, numpy.random.Generator):
                raise ValueError(f"generator must be a numpy.random.Generator, got {generator!r}")
            self.rng_data = self.rng_z = generator
        else:
            seeds = numpy.random.SeedSequence(seed).spawn(2)
            self.rng_data = numpy.random.default_rng(seeds[0])   # minibatches
            self.rng_z = numpy.random.default_rng(seeds[1])      # the noise prior
        self.sample_z = sample_z or models.z_sampler("gaussian", getattr(G, "z_dim", models.Z_DIM))
        self.step_count, self.epoch = 0, 0
        self._order, self._pos = None, 0                      # position inside the epoch
        self.history = []                                     # one dict per epoch

    # -- one update ---------------------------------------------------------------
    def _schedules(self):
        lr = self.lr_schedule if isinstance(self.lr_schedule, tuple) else (self.lr_schedule,) * 2
        for opt, schedule in zip((self.opt_g, self.opt_d), lr):
            if schedule is not None:
                opt.lr = schedule(self.step_count)
            if self.momentum_schedule is not None and hasattr(opt, "momentum"):
                opt.momentum = self.momentum_schedule(self.epoch)

    def _d_loss(self, l_real, l_fake):
        # -d_scale [log D(x) + log(1 - D(G(z)))] = d_scale (BCE(l_real, 1) + BCE(l_fake, 0))
        loss = (F.binary_cross_entropy_with_logits(l_real, 1.0)
                + F.binary_cross_entropy_with_logits(l_fake, 0.0))
        return loss * self.d_scale if self.d_scale != 1.0 else loss

    def _g_loss(self, l_fake):
        if self.g_loss == "nonsaturating":      # minimise -log D(G(z)) = BCE(l_fake, 1)
            return F.binary_cross_entropy_with_logits(l_fake, 1.0)
        return -F.binary_cross_entropy_with_logits(l_fake, 0.0)   # minimise log(1 - D(G(z)))

    def _stats(self, d_loss, l_real, l_fake):
        xp = backend.xp
        return {"d_loss": float(d_loss.item()),
                "d_real": float(xp.mean(_sigmoid(l_real.data))),
                "d_fake": float(xp.mean(_sigmoid(l_fake.data)))}

    def _refuse_non_finite(self, stats, module, params):
        """NonFiniteError unless every stat and every gradient in ``params`` is finite."""
        bad = [k for k, v in stats.items() if not math.isfinite(v)]
        i = None if bad else _first_non_finite_grad(params)
        if not bad and i is None:
            return
        if bad:
            what = "loss " + ", ".join(f"{k} = {stats[k]}" for k in bad)
        else:
            names = {id(p): n for n, p in module.named_parameters()}
            who = "G" if module is self.G else "D"
            what = f"gradient of {who}'s {names.get(id(params[i]), f'parameter {i}')!r}"
        raise NonFiniteError(f"step {self.step_count + 1}: NaN or inf in the {what} ({stats}); "
                             "nothing was updated")

    def _check_batch(self, x):
        """x as a backend array (m, D), m >= 1, all finite; else ValueError / NonFiniteError."""
        xp = backend.xp
        x = backend.asarray(x)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"step: x must be a batch (m, D) with m >= 1 rows, got shape "
                             f"{tuple(x.shape)}")
        if not bool(xp.isfinite(x).all()):
            rows = backend.to_numpy(xp.nonzero(~xp.isfinite(x).all(axis=1))[0])
            raise NonFiniteError(f"step {self.step_count + 1}: the batch x has NaN or inf in "
                                 f"row(s) {rows[:10].tolist()}; nothing was updated")
        return x

    def step(self, x=None, d_only=False):
        """One update from the real minibatch x (m, D) (backend or host array;
        None: ``batch_size`` rows drawn from the data sampler after z, as
        Algorithm 1 draws them). Simultaneous: D and G from this batch at once.
        Otherwise one D step; every k-th D step is followed by a G step
        (``d_only``: never, e.g. to train D alone first). Returns the batch stats.

        x empty or not 2-D: ValueError. NaN or inf in x, a loss or a gradient:
        NonFiniteError, raised before any parameter, optimizer buffer or
        lr, moving average, random generator or counter changed (a retry draws
        the same numbers). In the sequential mode a refused G step also undoes
        the D step before it."""
        sampled = x is None
        if sampled and not callable(self.data):
            raise ValueError("step: x is needed when the data is an array (train_epoch draws "
                             "the batches)")
        if d_only and self.simultaneous:
            raise ValueError("step: d_only needs the sequential mode (simultaneous=False)")
        if not sampled:
            x = self._check_batch(x)
        rngs = [self.rng_z] + ([self.rng_data] if sampled and self.rng_data is not self.rng_z
                               else []) + _dropout_rngs(self.D)
        rng_states = [r.bit_generator.state for r in rngs]
        hypers = [{a: getattr(o, a) for a in ("lr", "momentum") if hasattr(o, a)}
                  for o in (self.opt_g, self.opt_d)]
        undo_d = None                   # D before its update, while a G step may still fail
        try:
            self._schedules()
            m = self.batch_size if sampled else x.shape[0]
            z = self.sample_z(m, self.rng_z)
            if sampled:
                x = self._check_batch(self.data(m, self.rng_data))
            x = Tensor(x)
            if self.simultaneous:
                fake = self.G(z)
                l_real, l_fake = self.D(x), self.D(fake)       # one graph, both players
                d_loss, g_loss = self._d_loss(l_real, l_fake), self._g_loss(l_fake)
                self.opt_d.zero_grad()
                self.opt_g.zero_grad()
                with frozen(self.G.parameters()):
                    d_loss.backward()                          # D's gradients; G's part is pruned
                stats = self._stats(d_loss, l_real, l_fake)
                stats["g_loss"] = float(g_loss.item())
                self._refuse_non_finite(stats, self.D, self.opt_d.params)   # while in cache
                with frozen(self.D.parameters()):
                    g_loss.backward()                          # G's gradients, through D
                self._refuse_non_finite(stats, self.G, self.opt_g.params)
                g_updated = True
            else:
                with no_grad():
                    fake = self.G(z)
                l_real, l_fake = self.D(x), self.D(fake)
                d_loss = self._d_loss(l_real, l_fake)
                self.opt_d.zero_grad()
                d_loss.backward()
                stats = self._stats(d_loss, l_real, l_fake)
                self._refuse_non_finite(stats, self.D, self.opt_d.params)
                g_updated = not d_only and (self.step_count + 1) % self.k == 0
                if g_updated:
                    undo_d = _copy_state(self.opt_d)
                self.opt_d.step()
                if g_updated:
                    z = self.sample_z(m, self.rng_z)           # fresh noise for G's step
                    with frozen(self.D.parameters()):
                        l_gen = self.D(self.G(z))
                        g_loss = self._g_loss(l_gen)
                        self.opt_g.zero_grad()
                        g_loss.backward()
                    stats["g_loss"] = float(g_loss.item())
                    self._refuse_non_finite(stats, self.G, self.opt_g.params)
        except BaseException:
            if undo_d is not None:
                _put_state(self.opt_d, undo_d)
            for r, st in zip(rngs, rng_states):
                r.bit_generator.state = st
            for o, h in zip((self.opt_g, self.opt_d), hypers):
                for attr, v in h.items():
                    setattr(o, attr, v)
            self.opt_g.zero_grad()
            self.opt_d.zero_grad()
            raise
        # everything checked: apply
        if self.simultaneous:
            self.opt_d.step()
            self.opt_g.step()
        elif g_updated:
            self.opt_g.step()
        if g_updated:
            for ema in self.emas.values():
                ema.update(self.G.parameters())
        self.step_count += 1
        return stats

    # -- epochs ---------------------------------------------------------------------
    def batches_per_epoch(self):
        """Batches in one epoch over the data array (a sampler has no epochs: ValueError)."""
        if callable(self.data):
            raise ValueError("the data is a sampler: there are no epochs; call step() per batch")
        return len(self.data) // self.batch_size

    def batches_left(self):
        """Batches of the current epoch still to run (all of them between epochs)."""
        return self.batches_per_epoch() - self._pos

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
            batch = self.data[idx]
            try:
                stats = self.step(batch)            # checks the batch before anything changes
            except NonFiniteError as e:
                finite = numpy.isfinite(batch).all(axis=1)
                if finite.all():
                    raise
                # data changed since the constructor's check: name the data rows
                raise NonFiniteError(f"step {self.step_count + 1}: data rows "
                                     f"{idx[~finite][:10].tolist()} hold NaN or inf; nothing "
                                     "was updated") from e
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
        """n samples (host (n, D)) from G (default self.G), z from this trainer's
        prior drawn by ``rng`` (default a fixed seed, so evaluations are comparable),
        ``batch`` rows per G call (:func:`npgan.sampling.sample`). n or batch not a
        positive integer: ValueError."""
        return sampling.sample(G or self.G, n, batch=batch,
                               rng=rng if rng is not None else 12345, sample_z=self.sample_z)

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
        """Restore :meth:`state_dict` output, all or nothing: everything is
        checked first (keys, shapes, dtypes, NaN/inf, the optimizers' kind and
        hyper-parameters, the moving averages' decays, RNG states, counters)
        and a mismatch raises CheckpointError naming it, the trainer unchanged."""
        self._check_state(s)
        old = self._references()
        try:
            self._set_state(s)
        except Exception as e:          # a check above missed something: undo, then report
            self._restore_references(old)
            raise CheckpointError(f"checkpoint state does not fit this trainer: "
                                  f"{type(e).__name__}: {e}") from e

    def _set_state(self, s):
        self.G.load_state_dict(s["G"])
        self.D.load_state_dict(s["D"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        for d, e in self.emas.items():
            e.avg = [backend.asarray(a, dtype=p.dtype).copy()
                     for a, p in zip(s["ema"][str(d)], self.G.parameters())]
        self.rng_data.bit_generator.state = s["rng"]["data"]
        self.rng_z.bit_generator.state = s["rng"]["z"]
        for r, st in zip(_dropout_rngs(self.D), s["rng"]["dropout"]):
            r.bit_generator.state = st
        self.step_count, self.epoch = int(s["step"]), int(s["epoch"])
        self._order = None if s["order"] is None else numpy.array(s["order"], dtype=numpy.int64)
        self._pos = int(s["pos"])
        self._sums = {k: (float(v[0]), int(v[1])) for k, v in s["sums"].items()}
        self.history = [dict(h) for h in s["history"]]

    def _references(self):
        """What load_state_dict replaces (it replaces arrays, never writes into them)."""
        opts = [(o, {n: list(b) for n, b in o._state_arrays().items()}, o.steps, o._hyper())
                for o in (self.opt_g, self.opt_d)]
        rngs = [self.rng_data, self.rng_z] + _dropout_rngs(self.D)
        return ([(p, p.data) for p in self.G.parameters() + self.D.parameters()], opts,
                [(e, e.avg) for e in self.emas.values()],
                [(r, r.bit_generator.state) for r in rngs],
                (self.step_count, self.epoch, self._order, self._pos,
                 getattr(self, "_sums", {}), self.history))

    def _restore_references(self, old):
        params, opts, emas, rngs, counters = old
        for p, d in params:
            p.data, p.grad = d, None
        for o, bufs, steps, hyper in opts:
            for n, b in o._state_arrays().items():
                b[:] = bufs[n]
            o.steps = steps
            for k, v in hyper.items():
                setattr(o, k, v)
        for e, avg in emas:
            e.avg = avg
        for r, st in rngs:
            r.bit_generator.state = st
        (self.step_count, self.epoch, self._order, self._pos, self._sums, self.history) = counters

    def _check_state(self, s):
        """CheckpointError naming the first part of ``s`` that does not fit; changes nothing."""
        def bad(msg):
            raise CheckpointError(f"checkpoint state does not fit this trainer: {msg}")
        if not isinstance(s, dict):
            bad(f"expected a dict, got {type(s).__name__}")
        want = {"G", "D", "opt_g", "opt_d", "ema", "rng", "step", "epoch", "order", "pos",
                "sums", "history"}
        if set(s) != want:
            bad(f"missing keys {sorted(want - set(s))}, unexpected keys "
                f"{sorted(map(str, set(s) - want))}")
        for name, module in (("G", self.G), ("D", self.D)):
            _check_arrays(bad, name, s[name], module.named_parameters())
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            try:
                opt.check_state_dict(s[name])
            except ValueError as e:
                bad(f"{name}: {e}")
        ema = s["ema"]
        if not isinstance(ema, dict) or sorted(ema) != sorted(map(str, self.emas)):
            have = sorted(ema) if isinstance(ema, dict) else type(ema).__name__
            bad(f"checkpoint has moving averages {have}, this trainer keeps "
                f"{sorted(map(str, self.emas))}")
        names = [n for n, _ in self.G.named_parameters()]
        for d in self.emas:
            avg = ema[str(d)]
            if not isinstance(avg, list) or len(avg) != len(names):
                bad(f"ema {d} must be a list of {len(names)} arrays")
            _check_arrays(bad, f"ema {d}", dict(zip(names, avg)), self.G.named_parameters())
        rng = s["rng"]
        drop = _dropout_rngs(self.D)
        if not isinstance(rng, dict) or set(rng) != {"data", "z", "dropout"}:
            bad("rng must be a dict with keys 'data', 'z', 'dropout'")
        if not isinstance(rng["dropout"], list) or len(rng["dropout"]) != len(drop):
            bad(f"checkpoint's dropout generators do not match this D ({len(drop)})")
        for what, r, st in [("data", self.rng_data, rng["data"]), ("z", self.rng_z, rng["z"])] + [
                (f"dropout {i}", r, st) for i, (r, st) in enumerate(zip(drop, rng["dropout"]))]:
            try:
                type(r.bit_generator)().state = st          # on a scratch generator
            except (TypeError, ValueError, KeyError) as e:
                bad(f"rng {what}: {type(e).__name__}: {e}")
        for key in ("step", "epoch", "pos"):
            v = s[key]
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                bad(f"{key} must be an integer >= 0, got {v!r}")
        order = s["order"]
        if order is None:
            if s["pos"] != 0:
                bad(f"pos is {s['pos']} but there is no epoch order")
        elif callable(self.data):
            bad("order must be None: this trainer's data is a sampler (no epochs)")
        else:
            n = len(self.data)
            if (not isinstance(order, numpy.ndarray) or order.dtype.kind not in "iu"
                    or order.shape != (n,)
                    or not numpy.array_equal(numpy.sort(order), numpy.arange(n))):
                bad(f"order must be a permutation of the {n} data rows")
            if s["pos"] > self.batches_per_epoch():
                bad(f"pos {s['pos']} is past the epoch's {self.batches_per_epoch()} batches")
        sums = s["sums"]
        if not isinstance(sums, dict) or not all(
                isinstance(v, (list, tuple)) and len(v) == 2
                and all(isinstance(x, numbers.Real) for x in v) for v in sums.values()):
            bad("sums must map names to (sum, count) pairs")
        if not isinstance(s["history"], list) or not all(isinstance(h, dict) for h in s["history"]):
            bad("history must be a list of dicts")


def _check_arrays(bad, what, state, named_params):
    """``state`` {name: array} must have exactly these parameters' names and shapes,
    real data, finite in each parameter's dtype."""
    own = dict(named_params)
    if not isinstance(state, dict):
        bad(f"{what} must be a dict of arrays, got {type(state).__name__}")
    if set(state) != set(own):
        bad(f"{what}: missing keys {sorted(set(own) - set(state))}, unexpected keys "
            f"{sorted(map(str, set(state) - set(own)))}")
    for k, p in own.items():
        a = state[k]
        kind = getattr(getattr(a, "dtype", None), "kind", None)
        if kind is None or kind not in "fiu" or tuple(a.shape) != p.shape:
            bad(f"{what} '{k}' must be a real array of shape {p.shape}, got "
                f"{type(a).__name__} {getattr(a, 'dtype', '')} {getattr(a, 'shape', '')}")
        with numpy.errstate(over="ignore", invalid="ignore"):
            ok = bool(backend.xp.isfinite(backend.asarray(a, dtype=p.dtype)).all())
        if not ok:
            bad(f"{what} '{k}' has NaN or inf values (or values that overflow {p.dtype})")


def _sigmoid(a):
    """D's probabilities for the batch statistics d_real, d_fake (reported, never
    differentiated). Not the kernel sigmoid (``F.sigmoid``): that one rounds some
    batch means differently in the last bit, and the recorded histories of runs
    (and the A/B fingerprint of training) are these exact numbers."""
    xp = backend.xp
    return 1.0 / (1.0 + xp.exp(-xp.clip(a, -60, 60)))


def _first_non_finite_grad(params):
    """Index of the first parameter whose gradient holds NaN or inf, else None
    (one read of each gradient: ``_kernels.all_finite``)."""
    for i, p in enumerate(params):
        if p.grad is not None and not K.all_finite(p.grad):
            return i
    return None


def _copy_state(opt):
    """A copy of what ``opt.step()`` changes: its parameters, buffers and step count."""
    return ([p.data.copy() for p in opt.params],
            {n: [None if a is None else a.copy() for a in bufs]
             for n, bufs in opt._state_arrays().items()}, opt.steps)


def _put_state(opt, saved):
    data, bufs, steps = saved
    for p, d in zip(opt.params, data):
        p.data = d
    for n, b in opt._state_arrays().items():
        b[:] = bufs[n]
    opt.steps = steps


def _dropout_rngs(module):
    """The distinct numpy Generators used by module's Dropout layers, in order."""
    seen, out = set(), []
    for m in module.modules():
        r = getattr(m, "rng", None)
        if isinstance(r, numpy.random.Generator) and id(r) not in seen:
            seen.add(id(r))
            out.append(r)
    return out


def paper_schedules(lr=0.1, decay=1.000004, **tail):
    """The paper's lr decay (lr / decay^t: 0.1 / 1.000004^t, floor 1e-6) and momentum
    ramp (.5 -> .7, pylearn2's MomentumAdjustor(start=1, saturate=250)). ``tail``:
    tail_from / tail_factor of :class:`npgan.optim.ExponentialDecay`.

    The trainer evaluates the ramp with the number of epochs completed, c.
    pylearn2 calls the adjustor once before training and after every epoch, so
    its counter reads c + 1 during epoch c + 1 and the momentum is
    .5 + .2 min(c / 249, 1): LinearRamp(.5, .7, 0, 249) in completed epochs
    (.7 from the 250th epoch on)."""
    return optim.ExponentialDecay(lr, decay, 1e-6, **tail), optim.LinearRamp(0.5, 0.7, 0, 249)
