"""The paper's MNIST networks, as in the authors' released pylearn2 code.

G: z (N, 100) ~ N(0, I) (the authors' Generator default, ``noise="gaussian"``;
   uniform on [-sqrt 3, sqrt 3] on request) -> 1200 ReLU -> 1200 ReLU -> 784
   sigmoid; weights U(-0.05, 0.05); output bias = logit of the training
   pixel means.  G returns pixel *logits* when ``logits=True``.
D: x (N, 784) -> dropout (keep .8) -> maxout 240x5 -> dropout (keep .5) ->
   maxout 240x5 -> dropout (keep .5) -> 1 linear unit (a logit); weights
   U(-0.005, 0.005). The sigmoid is left to the loss (computed from logits).
"""
import math
import numbers

import numpy  # host-side: initialisation and the z prior's RNG

from . import backend, nn
from .tensor import Tensor, is_grad_enabled

Z_DIM = 100
Z_RANGE = math.sqrt(3.0)   # U(-sqrt3, sqrt3) has unit variance
Z_PRIORS = ("gaussian", "uniform")


def sample_z(n, rng, dim=Z_DIM, dtype="float32", prior="gaussian"):
    """(n, dim) backend array of z drawn by a host Generator ``rng``:
    ``prior="gaussian"``: N(0, I), the authors' MNIST G (pylearn2 ``Generator``'s
    default ``noise="gaussian"``, ``theano_rng.normal``); ``"uniform"``:
    U(-sqrt 3, sqrt 3) per coordinate (also unit variance)."""
    if prior == "gaussian":
        z = rng.standard_normal((n, dim), dtype="float32" if dtype == "float32" else "float64")
    elif prior == "uniform":
        z = rng.uniform(-Z_RANGE, Z_RANGE, (n, dim))
    else:
        raise ValueError(f"prior must be one of {Z_PRIORS}, got {prior!r}")
    return backend.asarray(z.astype(dtype, copy=False))


def run_prior(config):
    """The z prior a trainer run's config (``mnist_gan.py``'s, as a checkpoint
    stores it) names; runs written before the option existed drew z uniform."""
    return config.get("z", "uniform")


def z_sampler(prior="gaussian", dim=Z_DIM, dtype="float32"):
    """sample(n, rng) -> (n, dim) z from ``prior``: what GANTrainer takes as sample_z."""
    if prior not in Z_PRIORS:
        raise ValueError(f"prior must be one of {Z_PRIORS}, got {prior!r}")

    def sample(n, rng):
        return sample_z(n, rng, dim=dim, dtype=dtype, prior=prior)
    return sample


def pixel_logits(images, eps=1e-7):
    """logit of the per-pixel means of ``images`` (N, D) in [0, 1] -> (D,), as
    pylearn2's init_bias_target_marginals."""
    m = numpy.clip(numpy.asarray(images, dtype=numpy.float64).mean(axis=0), eps, 1 - eps)
    return numpy.log(m / (1 - m))


class Generator(nn.Module):
    """z (N, z_dim) -> images (N, out) in (0, 1) (or their logits)."""

    def __init__(self, z_dim=Z_DIM, hidden=1200, out=784, irange=0.05, output_bias=None,
                 rng=None, dtype="float32"):
        rng = rng if rng is not None else numpy.random.default_rng()
        self.z_dim = z_dim
        self.h0 = nn.Linear(z_dim, hidden, irange=irange, rng=rng, dtype=dtype)
        self.h1 = nn.Linear(hidden, hidden, irange=irange, rng=rng, dtype=dtype)
        self.y = nn.Linear(hidden, out, irange=irange, rng=rng, dtype=dtype)
        if output_bias is not None:
            self.y.bias.data = backend.asarray(output_bias, dtype=dtype).copy()

    block = 2000   # rows per block of a forward that records no graph (None: one pass)
    z_prior = "gaussian"   # the prior G was trained with (npgan.sampling.load_generator sets a run's)

    def forward(self, z, logits=False):
        z = z if isinstance(z, Tensor) else Tensor(z)
        if self.block is not None and (not isinstance(self.block, numbers.Integral) or self.block < 1):
            raise ValueError(f"Generator.block must be a positive int or None, got {self.block!r}")
        if z.ndim == 2 and self.block is not None and len(z) > self.block and not (is_grad_enabled() and (
                z.requires_grad or any(p.requires_grad for p in self.parameters()))):
            # No backward can follow: run the rows in blocks, so the two hidden
            # activations are block-sized buffers (not 2 x 48 MB fresh pages for
            # 10,000 samples) and each block's products suit the GEMM kernel.
            out = backend.xp.empty((len(z), self.y.out_features), dtype=self.y.weight.dtype)
            for i in range(0, len(z), self.block):
                out[i:i + self.block] = self._forward(Tensor(z.data[i:i + self.block]), logits).data
            return Tensor(out)
        return self._forward(z, logits)

    def _forward(self, z, logits):
        h = self.h1(self.h0(z, activation="relu"), activation="relu")   # fused into each layer's op
        return self.y(h, activation=None if logits else "sigmoid")


class Discriminator(nn.Module):
    """x (N, in) -> logit of "x is real" (N, 1); dropout only in train mode."""

    def __init__(self, inp=784, units=240, pieces=5, irange=0.005, p_input=0.2, p_hidden=0.5,
                 rng=None, dropout_rng=None, dtype="float32"):
        rng = rng if rng is not None else numpy.random.default_rng()
        drop = dropout_rng if dropout_rng is not None else numpy.random.default_rng(rng.integers(2**63))
        self.drop0 = nn.Dropout(p_input, rng=drop)
        self.h0 = nn.Maxout(inp, units, pieces, irange=irange, rng=rng, dtype=dtype)
        self.drop1 = nn.Dropout(p_hidden, rng=drop)
        self.h1 = nn.Maxout(units, units, pieces, irange=irange, rng=rng, dtype=dtype)
        self.drop2 = nn.Dropout(p_hidden, rng=drop)
        self.y = nn.Linear(units, 1, irange=irange, rng=rng, dtype=dtype)
        self.dropout_rng = drop        # shared by the three dropout layers

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        return self.y(self.drop2(self.h1(self.drop1(self.h0(self.drop0(x))))))


def widen_state(state, first_layer, extra_rows):
    """A host copy of a network's state_dict with ``extra_rows`` zero rows appended
    to the weight ``first_layer`` (in_features, out_features): its input grows by
    that many entries (a label, a code) at the end, and the widened network
    computes exactly what the trained one did until training gives them a weight."""
    out = {k: numpy.array(backend.to_numpy(v)) for k, v in state.items()}
    w = out[first_layer]
    out[first_layer] = numpy.concatenate([w, numpy.zeros((extra_rows, w.shape[1]), w.dtype)])
    return out


def paper_mnist(seed=0, train_images=None, dtype="float32"):
    """(G, D) of the paper's MNIST experiment, initialised from ``seed``;
    ``train_images`` (N, 784) in [0, 1] set G's output bias (else zero)."""
    rng = numpy.random.default_rng(seed)
    bias = None if train_images is None else pixel_logits(train_images)
    g = Generator(output_bias=bias, rng=rng, dtype=dtype)
    d = Discriminator(rng=rng, dtype=dtype)
    return g, d
