"""Learned approximate inference and conditionals p(x_S | x_not S) for a trained G
(paper Section 7, items 2 and 3).

* :class:`Encoder` E: x (N, 784) -> z (N, z_dim), "an auxiliary network to
  predict z given x", trained on G's own samples (the authors' ``inferer``):

      repeat: z ~ p(z); x = G(z) (no gradient into G); minimise mean (E(x) - z)^2

  (:func:`train_encoder`). Then G(E(x)) reconstructs an image x.
* :func:`fit_z`: z that makes G(z) match x on the pixels of a mask (gradient
  descent on z through the frozen G, from a start such as E(x)); with the top
  half as the mask, G(z)'s bottom half completes the digit (inpainting).
The nearest-training-image baseline is :func:`npgan.metrics.nearest_indices`.

"""
import numpy  # host-side: initialisation, RNGs

from . import backend, models, nn, optim
from . import functional as F
from .tensor import Tensor, no_grad
from .train import frozen

__all__ = ["Encoder", "train_encoder", "encode", "reconstruct", "fit_z"]


class Encoder(nn.Module):
    """x (N, inp) -> z (N, z_dim): the paper's G in reverse (inp -> 1200 ReLU -> 1200
    ReLU -> z_dim linear), weights U(-irange, irange)."""

    def __init__(self, inp=784, hidden=1200, z_dim=models.Z_DIM, irange=0.05, rng=None,
                 dtype="float32"):
        rng = rng if rng is not None else numpy.random.default_rng()
        self.z_dim = z_dim
        self.h0 = nn.Linear(inp, hidden, irange=irange, rng=rng, dtype=dtype)
        self.h1 = nn.Linear(hidden, hidden, irange=irange, rng=rng, dtype=dtype)
        self.y = nn.Linear(hidden, z_dim, irange=irange, rng=rng, dtype=dtype)

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        return self.y(self.h1(self.h0(x, activation="relu"), activation="relu"))


def _minimise(opt, loss, steps, on_step=None):
    """For t in ``steps``: loss(t) -> a scalar Tensor, one optimizer step on it,
    on_step(t + 1, value). Returns the list of loss values."""
    losses = []
    for t in steps:
        value = loss(t)
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(float(value.item()))
        if on_step is not None:
            on_step(t + 1, losses[-1])
    return losses


def train_encoder(E, G, steps, batch_size=100, opt=None, rng=0, sample_z=None, lr_schedule=None,
                  on_step=None, start=0):
    """Train E to predict z from x = G(z) (MSE), ``steps`` minibatches of fresh
    samples. opt: default Adam(lr 1e-3). sample_z(n, rng): G's prior (default
    ``G.z_prior``). lr_schedule(step) sets opt.lr before each step. on_step(step,
    loss) after each. ``start``: steps already done (for the schedule, when
    resuming). Returns the list of losses."""
    opt = opt or optim.Adam(E.parameters(), lr=1e-3)
    rng = rng if isinstance(rng, numpy.random.Generator) else numpy.random.default_rng(rng)
    if sample_z is None:
        sample_z = models.z_sampler(getattr(G, "z_prior", "gaussian"), getattr(G, "z_dim", models.Z_DIM))
    def loss(t):
        if lr_schedule is not None:
            opt.lr = lr_schedule(t)
        z = sample_z(batch_size, rng)
        with no_grad():
            x = G(z).data
        return F.mse_loss(E(x), z)
    return _minimise(opt, loss, range(start, start + steps), on_step)


def encode(E, x, batch=1000):
    """Host z (N, z_dim) = E(x) for host images x (N, D)."""
    out = []
    with no_grad():
        for i in range(0, len(x), batch):
            out.append(backend.to_numpy(E(Tensor(backend.asarray(x[i:i + batch]))).data))
    return numpy.concatenate(out) if out else numpy.zeros((0, E.z_dim), numpy.float32)


def decode(G, z, batch=1000):
    """Host images G(z) for host z (N, z_dim)."""
    out = []
    with no_grad():
        for i in range(0, len(z), batch):
            out.append(backend.to_numpy(G(Tensor(backend.asarray(z[i:i + batch]))).data))
    return numpy.concatenate(out)


def reconstruct(G, E, x, batch=1000):
    """Host G(E(x)) for host images x."""
    return decode(G, encode(E, x, batch), batch)


def fit_z(G, x, mask, z0, steps=200, lr=0.05, prior_weight=0.0, on_step=None):
    """z minimising mean over masked pixels (G(z) - x)^2 + prior_weight * mean z^2,
    by Adam on z from ``z0`` (host (N, z_dim)), G frozen. mask: (D,) or (N, D)
    0/1. Returns (host z, list of losses). Each row's loss is independent of the
    others (the loss is their mean; Adam's scale-free step treats rows alike)."""
    z = Tensor(backend.asarray(numpy.array(z0, dtype=numpy.float32)), requires_grad=True)
    mask = numpy.broadcast_to(numpy.asarray(mask, dtype=numpy.float32), x.shape)
    target = Tensor(backend.asarray(x, dtype="float32"))
    opt = optim.Adam([z], lr=lr)
    def loss(t):
        fit = F.mse_loss(G(z), target, mask)
        return fit + (z * z).mean() * prior_weight if prior_weight else fit
    with frozen(G.parameters()):
        losses = _minimise(opt, loss, range(steps), on_step)
    return backend.to_numpy(z.data).copy(), losses
