"""Cures for mode collapse: WGAN, WGAN-GP and the unrolled GAN (issue #17, part 2).

    WGAN (Arjovsky et al., 2017), Algorithm 1:
        n_critic times: x ~ p_data, z ~ p_z
                        w <- w - RMSprop(grad_w [E D_w(G(z)) - E D_w(x)])      critic_loss
                        w <- clip(w, -c, c)                                      clip_weights_
        z ~ p_z;        theta <- theta - RMSprop(grad_theta -E D_w(G(z)))       generator_loss

    WGAN-GP (Gulrajani et al., 2017), Algorithm 1: as WGAN, without clipping, on Adam,
        the critic's loss plus  lambda E (||grad_xhat D(xhat)||_2 - 1)^2,
        xhat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per example               gradient_penalty

    Unrolled GAN (Metz et al., 2017): D is updated as usual; G descends its loss
        against D after K more updates of D's optimizer,  f_K(theta_G) =
        -E log D_{w_K}(G(z)),  w_{i+1} = w_i - opt(grad_w L_D(w_i, G(z))),  w_0 = w,
        differentiated through all K updates (the second-order terms included):
        unrolled_parameters, then Module.functional_call.

The critic is D without a sigmoid: its output is a real number, not a logit
of a probability (the D of npgan.models and the toys already end in a linear
unit; the sigmoid lives only inside the GAN losses). The GAN losses themselves
stay in npgan.train.GANTrainer; the trainers here reuse them.

Second derivatives come from ``npgan.grad(..., create_graph=True)``.
"""
import numpy  # host-side: the interpolation weights

from . import backend, optim
from .tensor import Tensor, grad, no_grad
from .train import NonFiniteError, frozen

__all__ = ["critic_loss", "generator_loss", "clip_weights_", "interpolate", "gradient_penalty",
           "unrolled_parameters", "WassersteinTrainer", "UnrolledTrainer"]


# ---- the Wasserstein losses -------------------------------------------------------
def critic_loss(c_real, c_fake):
    """What the critic minimises: E D(G(z)) - E D(x), the negated estimate of the
    Wasserstein-1 distance (critic outputs (m, 1), no sigmoid)."""
    return c_fake.mean() - c_real.mean()


def generator_loss(c_fake):
    """What G minimises: -E D(G(z))."""
    return -c_fake.mean()


def clip_weights_(params, c):
    """Clamp every parameter into [-c, c] in place (WGAN's Lipschitz constraint)."""
    if not c > 0:
        raise ValueError(f"clip value must be > 0, got {c!r}")
    xp = backend.xp
    for p in params:
        xp.clip(p.data, -c, c, out=p.data)


# ---- the gradient penalty ---------------------------------------------------------
def interpolate(x, fake, rng):
    """x_hat = eps x + (1 - eps) fake, one eps ~ U[0, 1] per row drawn by ``rng``
    (host Generator); x and fake backend arrays (m, D) -> backend array (m, D)."""
    x, fake = backend.asarray(x), backend.asarray(fake)
    if x.shape != fake.shape:
        raise ValueError(f"interpolate: x {x.shape} and fake {fake.shape} differ in shape")
    eps = backend.asarray(rng.random((x.shape[0], 1)).astype(x.dtype))
    return eps * x + (1 - eps) * fake


def gradient_penalty(D, x_hat, create_graph=True, eps=1e-12):
    """E (||grad_x D(x)||_2 - 1)^2 over the rows of ``x_hat`` (m, D), a Tensor
    recording its graph down to D's parameters when create_graph (so that its
    gradient w.r.t. them, a second derivative, can follow). ``eps`` under the
    square root keeps the norm differentiable where the gradient vanishes."""
    x_hat = Tensor(x_hat.data if isinstance(x_hat, Tensor) else backend.asarray(x_hat),
                   requires_grad=True)
    out = D(x_hat)
    (g,) = grad(out.sum(), [x_hat], create_graph=create_graph)
    norm = ((g * g).sum(axis=1) + eps) ** 0.5
    return ((norm - 1.0) ** 2).mean()


# ---- the unrolled D -----------------------------------------------------------------
def unrolled_parameters(D, opt_d, d_loss, k):
    """D's parameters after ``k`` further updates by ``opt_d``'s rule (SGD or Adam,
    continuing from its current buffers and step count) on ``d_loss(forward)``,
    where ``forward(x)`` runs D with the parameters of the moment; as Tensors that
    record every update (create_graph), so a loss built on them differentiates
    through the unrolling. Returns {name: Tensor}; D itself is not changed.

    ``d_loss`` typically closes over a fixed real batch and G(z) with its graph
    (Metz et al. unroll on one batch)."""
    names = [n for n, _ in D.named_parameters()]
    params = dict(D.named_parameters())          # w_0: D's own Parameters
    idx = {id(p): i for i, p in enumerate(opt_d.params)}
    order = [idx[id(params[n])] for n in names]
    if isinstance(opt_d, optim.Adam):
        b1, b2 = opt_d.betas
        m = [_const(opt_d.m[i], params[n]) for i, n in zip(order, names)]
        v = [_const(opt_d.v[i], params[n]) for i, n in zip(order, names)]
    elif isinstance(opt_d, optim.SGD):
        if opt_d.nesterov:
            raise ValueError("unrolled_parameters: Nesterov SGD is not supported")
        vel = [_const(opt_d.velocity[i], params[n]) for i, n in zip(order, names)]
    else:
        raise TypeError(f"unrolled_parameters: D's optimizer must be SGD or Adam, got "
                        f"{type(opt_d).__name__}")
    for s in range(k):
        loss = d_loss(lambda x: D.functional_call(params, x))
        gs = grad(loss, [params[n] for n in names], create_graph=True)
        new = {}
        for j, (n, g) in enumerate(zip(names, gs)):
            w = params[n]
            if isinstance(opt_d, optim.Adam):
                t = opt_d.steps + s + 1
                m[j] = m[j] * b1 + g * (1 - b1)
                v[j] = v[j] * b2 + g * g * (1 - b2)
                # + 1e-30: d sqrt(v)/dv stays finite where v = 0 (a dead unit's weight)
                new[n] = w - m[j] * (opt_d.lr / (1 - b1 ** t)) / (
                    (v[j] * (1 / (1 - b2 ** t)) + 1e-30) ** 0.5 + opt_d.eps)
            else:
                vel[j] = vel[j] * opt_d.momentum - g * opt_d.lr
                new[n] = w + vel[j]
        params = new
    return params


def _const(buf, p):
    """An optimizer buffer (or zeros, before its first step) as a constant Tensor."""
    return Tensor(backend.xp.zeros_like(p.data) if buf is None else buf.copy())


# ---- trainers: one G step per call, n_critic (or 1) D steps before it ---------------
class WassersteinTrainer:
    """WGAN (``clip`` = c, RMSprop) or WGAN-GP (``gp_weight`` = lambda, Adam): each
    :meth:`step` makes ``n_critic`` critic steps, then one G step. ``data(m, rng)``
    and ``sample_z(m, rng)`` draw from ``generator`` (one stream for the run, in
    the order z, x, [eps] per critic step, then z for G)."""

    def __init__(self, G, D, data, sample_z, opt_g, opt_d, n_critic=5, clip=None, gp_weight=None,
                 batch_size=256, generator=None):
        if (clip is None) == (gp_weight is None):
            raise ValueError("give exactly one of clip (WGAN) or gp_weight (WGAN-GP)")
        self.G, self.D, self.data, self.sample_z = G, D, data, sample_z
        self.opt_g, self.opt_d = opt_g, opt_d
        self.n_critic, self.clip, self.gp_weight = int(n_critic), clip, gp_weight
        self.batch_size = int(batch_size)
        self.rng = generator if generator is not None else numpy.random.default_rng(0)
        self.g_steps = 0

    def critic_step(self):
        m, rng = self.batch_size, self.rng
        z = self.sample_z(m, rng)
        x = backend.asarray(self.data(m, rng))
        with no_grad():
            fake = self.G(z).data
        c_real, c_fake = self.D(Tensor(x)), self.D(Tensor(fake))
        w = critic_loss(c_real, c_fake)
        loss = w
        stats = {"critic_loss": float(w.item())}
        if self.gp_weight is not None:
            gp = gradient_penalty(self.D, interpolate(x, fake, rng))
            loss = w + gp * self.gp_weight
            stats["gp"] = float(gp.item())
        self.opt_d.zero_grad()
        loss.backward()
        _check(stats, self.opt_d.params)
        self.opt_d.step()
        if self.clip is not None:
            clip_weights_(self.opt_d.params, self.clip)
        return stats

    def state_dict(self):
        """G, D, both optimizers, the generator's state and the G-step count (for
        npgan.checkpoint: a run continues bit for bit)."""
        return {"G": self.G.state_dict(), "D": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "rng": self.rng.bit_generator.state, "g_steps": self.g_steps}

    def load_state_dict(self, s):
        self.opt_g.check_state_dict(s["opt_g"])
        self.opt_d.check_state_dict(s["opt_d"])
        self.G.load_state_dict(s["G"])
        self.D.load_state_dict(s["D"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.rng.bit_generator.state = s["rng"]
        self.g_steps = int(s["g_steps"])

    def step(self):
        """n_critic critic steps, then one G step; returns the last stats."""
        for _ in range(self.n_critic):
            stats = self.critic_step()
        z = self.sample_z(self.batch_size, self.rng)
        with frozen(self.D.parameters()):
            g_loss = generator_loss(self.D(self.G(z)))
            self.opt_g.zero_grad()
            g_loss.backward()
        stats["g_loss"] = float(g_loss.item())
        _check(stats, self.opt_g.params)
        self.opt_g.step()
        self.g_steps += 1
        return stats


class UnrolledTrainer:
    """The unrolled GAN: each :meth:`step` is one ordinary D step of Algorithm 1
    (``gan``: a sequential :class:`GANTrainer`, whose losses are used throughout),
    then one G step on G's loss against D unrolled ``unroll`` updates ahead on a
    fresh batch (z, x), the gradient taken through the unrolling. unroll = 0 is
    Algorithm 1 with k = 1."""

    def __init__(self, gan, unroll):
        if gan.simultaneous:
            raise ValueError("UnrolledTrainer needs a sequential GANTrainer")
        self.gan, self.unroll = gan, int(unroll)
        self.g_steps = 0

    def g_loss(self, z, x):
        """G's loss -E log D_{w_K}(G(z)) (the trainer's g_loss) with D unrolled K
        steps on (x, G(z)); a Tensor with the graph down to G's parameters."""
        gan, D = self.gan, self.gan.D
        fake = gan.G(z)
        x = Tensor(x)
        if self.unroll == 0:
            return gan._g_loss(D(fake))
        params = unrolled_parameters(D, gan.opt_d, lambda f: gan._d_loss(f(x), f(fake)),
                                     self.unroll)
        return gan._g_loss(D.functional_call(params, fake))

    def step(self):
        gan = self.gan
        stats = gan.step(d_only=True)                  # D: one ordinary step (z, then x)
        m, rng = gan.batch_size, gan.rng_z
        z = gan.sample_z(m, rng)
        x = backend.asarray(gan.data(m, gan.rng_data))
        loss = self.g_loss(z, x)
        gs = grad(loss, gan.opt_g.params)
        gan.opt_g.zero_grad()
        for p, g in zip(gan.opt_g.params, gs):
            p.grad = g.data if isinstance(g, Tensor) else g
        stats["g_loss"] = float(loss.item())
        _check(stats, gan.opt_g.params)
        gan.opt_g.step()
        self.g_steps += 1
        return stats


def _check(stats, params):
    import math
    bad = [k for k, v in stats.items() if not math.isfinite(v)]
    if bad or any(p.grad is not None and not bool(backend.xp.isfinite(p.grad).all())
                  for p in params):
        raise NonFiniteError(f"NaN or inf in {bad or 'a gradient'} ({stats})")
