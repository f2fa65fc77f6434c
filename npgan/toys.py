"""The paper's Fig. 1 game: a GAN that learns a 1-D Gaussian, on :class:`GANTrainer`.

Data: x ~ N(4, 1.25^2). Noise: z ~ N(0, 1), one number (:func:`npgan.models.sample_z`,
drawn in float64 and rounded to float32). G and D are small MLPs (1 -> 16 -> 16 -> 1,
tanh); D outputs a logit. Algorithm 1 as the paper's box reads it: k steps of D, then
one step of G; both players on Adam, D 4x faster than G, both rates decaying linearly
to zero over the second half of the run (docs/figures.md says why).

Used by examples/gaussian_gan.py, fig1_toy.py and saturation.py.

:class:`ReLUMLP`: the ring's G and D (examples/mode_collapse.py, examples/variants.py).
"""
import numpy as np  # host-side: the game's samplers

from . import models, nn, optim, train
from . import functional as F
from .tensor import no_grad

DATA_MEAN, DATA_STD = 4.0, 1.25

__all__ = ["DATA_MEAN", "DATA_STD", "mlp", "ReLUMLP", "gaussian", "noise", "lr_factor", "gaussian_gan",
           "discriminate"]


def mlp(sizes, rng):
    """Linear -> tanh -> ... -> Linear (no activation at the end), xavier init from ``rng``."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, init="xavier", rng=rng))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class ReLUMLP(nn.Module):
    """in -> hidden -> hidden -> out, ReLU between (fused into the Linear ops), He
    (kaiming) init for the hidden layers, Glorot for the last; no activation at the
    end (D's output is a logit, or a critic's real value). ``sizes``: 4 widths."""

    def __init__(self, sizes, rng):
        self.l0 = nn.Linear(sizes[0], sizes[1], init="kaiming", rng=rng)
        self.l1 = nn.Linear(sizes[1], sizes[2], init="kaiming", rng=rng)
        self.l2 = nn.Linear(sizes[2], sizes[3], init="xavier", rng=rng)

    def forward(self, x):
        return self.l2(self.l1(self.l0(x, activation="relu"), activation="relu"))


def gaussian(mean=DATA_MEAN, std=DATA_STD):
    """p_data: sample(n, rng) -> (n, 1) float32 draws of N(mean, std^2)."""
    def sample(n, rng):
        return (mean + std * rng.standard_normal((n, 1))).astype("float32")
    return sample


def noise(prior="gaussian", dim=1):
    """p_z: sample(n, rng) -> (n, dim) float32 z from :func:`npgan.models.sample_z`'s
    ``prior`` ("gaussian": N(0, I); "uniform": U(-sqrt 3, sqrt 3)), drawn in float64."""
    if prior not in models.Z_PRIORS:
        raise ValueError(f"prior must be one of {models.Z_PRIORS}, got {prior!r}")

    def sample(n, rng):
        return models.sample_z(n, rng, dim=dim, dtype="float64", prior=prior).astype("float32")
    return sample


def lr_factor(step, steps, decay_from=0.5):
    """1 for the first half of the run (``decay_from``), then linearly down to 0 at the last step."""
    start = int(decay_from * steps)
    return 1.0 if step < start else (steps - step) / max(steps - start, 1)


def gaussian_gan(seed=0, steps=None, k=1, batch_size=256, hidden=16, lr_d=2e-3, lr_g=5e-4,
                 betas=(0.5, 0.999), data_mean=DATA_MEAN, data_std=DATA_STD, prior="gaussian",
                 g_loss="nonsaturating"):
    """A sequential :class:`npgan.train.GANTrainer` for the 1-D game. One generator
    seeded by ``seed`` initialises G, then D, then draws z and x. ``steps``: the
    run's length in G steps, over whose second half both learning rates decay to
    0 (None: constant rates). D's loss is the value function (d_scale 1)."""
    rng = np.random.default_rng(seed)
    G = mlp([1, hidden, hidden, 1], rng)       # z -> x
    D = mlp([1, hidden, hidden, 1], rng)       # x -> logit of "x is real"
    opt_d = optim.Adam(D.parameters(), lr=lr_d, betas=betas)
    opt_g = optim.Adam(G.parameters(), lr=lr_g, betas=betas)
    schedule = None
    if steps is not None:                      # step counts D steps: k per G step
        schedule = (lambda s: lr_factor(s // k, steps) * lr_g,
                    lambda s: lr_factor(s // k, steps) * lr_d)
    return train.GANTrainer(G, D, gaussian(data_mean, data_std), batch_size=batch_size, k=k,
                            simultaneous=False, g_loss=g_loss, opt_g=opt_g, opt_d=opt_d,
                            lr_schedule=schedule, sample_z=noise(prior), d_scale=1.0,
                            generator=rng)


def discriminate(D, x):
    """D's probability (not logit) that each x is real: 1-D host float32 array."""
    with no_grad():
        return F.sigmoid(D(np.asarray(x, dtype="float32").reshape(-1, 1))).numpy().ravel()
