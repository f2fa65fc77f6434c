"""The paper's Fig. 1 setting: a GAN that learns a 1-D Gaussian.

    python examples/gaussian_gan.py                 # ~10 s on 2 cores
    python examples/gaussian_gan.py --seed 3 --steps 4000

Data: x ~ N(4, 1.25^2). Noise: z ~ N(0, 1), one number. G and D are small
MLPs (1 -> 16 -> 16 -> 1, tanh); D outputs a logit and every loss is computed
from logits.

Algorithm 1 is written out below as the paper's box reads: k steps of D, then
one step of G with the non-saturating loss -log D(G(z)) (Section 3). Both
players use Adam; D learns 4x faster than G (lr 2e-3 vs 5e-4) and both rates
decay linearly to zero over the second half of the run. Without those two
choices the players circle the equilibrium: D(x) ~ 1/2 on average while p_g's
spread swings between 0.6 and 1.9 (try --lr-d 5e-4 --lr-g 5e-4). At the end
the fitted p_g's mean and standard deviation match the data's, and D can no
longer tell them apart: D(x) ~ 1/2 (Theorem 1: p_g = p_data, D* = 1/2).

Why z ~ N(0, 1) and not U(-1, 1) as in Fig. 1's sketch: from a uniform z, G
must learn the Gaussian's inverse CDF, which runs off to infinity at z = +-1;
a tanh MLP gets the middle right but not the tails, and the standard
deviation (a tail-sensitive number) wanders (try --noise uniform).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
from npgan import nn, optim, functional as F  # noqa: E402

DATA_MEAN, DATA_STD = 4.0, 1.25


def mlp(sizes, rng):
    """Linear -> tanh -> ... -> Linear (no activation at the end)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, init="xavier", rng=rng))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class GaussianGAN:
    """G, D, their optimizers and the two samplers of Algorithm 1."""

    def __init__(self, seed=0, hidden=16, lr_d=2e-3, lr_g=5e-4, betas=(0.5, 0.999),
                 data_mean=DATA_MEAN, data_std=DATA_STD, noise="normal", g_loss="nonsaturating"):
        if noise not in ("normal", "uniform"):
            raise ValueError(f"noise must be 'normal' or 'uniform', got {noise!r}")
        if g_loss not in ("nonsaturating", "minimax"):
            raise ValueError(f"g_loss must be 'nonsaturating' or 'minimax', got {g_loss!r}")
        self.rng = np.random.default_rng(seed)
        self.data_mean, self.data_std = data_mean, data_std
        self.G = mlp([1, hidden, hidden, 1], self.rng)      # z -> x
        self.D = mlp([1, hidden, hidden, 1], self.rng)      # x -> logit of "x is real"
        self.noise, self.g_loss, self.lr_d, self.lr_g = noise, g_loss, lr_d, lr_g
        self.opt_d = optim.Adam(self.D.parameters(), lr=lr_d, betas=betas)
        self.opt_g = optim.Adam(self.G.parameters(), lr=lr_g, betas=betas)

    # the two distributions Algorithm 1 samples from
    def noise_from(self, rng, m):              # z ~ p_z: N(0, 1) (or U(-1, 1))
        if self.noise == "normal":
            return rng.standard_normal((m, 1)).astype("float32")
        return rng.uniform(-1.0, 1.0, (m, 1)).astype("float32")

    def sample_noise(self, m):
        return self.noise_from(self.rng, m)

    def sample_data(self, m):                  # x ~ p_data: N(4, 1.25^2)
        return (self.data_mean + self.data_std * self.rng.standard_normal((m, 1))).astype("float32")

    # one iteration of Algorithm 1
    def d_step(self, m):
        """Ascend grad_theta_d 1/m sum [log D(x) + log(1 - D(G(z)))],
        i.e. descend its negative, the BCE of D's logits."""
        z, x = self.sample_noise(m), self.sample_data(m)
        with npgan.no_grad():                  # G is fixed during D's step
            fake = self.G(z)
        loss = F.binary_cross_entropy_with_logits(self.D(x), 1.0) \
            + F.binary_cross_entropy_with_logits(self.D(fake), 0.0)
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        return loss.item()

    def g_loss_of(self, logits):
        """G's loss from D's logits on G's samples (a scalar Tensor).
        Non-saturating (default): -log D(G(z)) = BCE(logit, 1) = softplus(-logit);
        minimax (Algorithm 1 as written): log(1 - D(G(z))) = -BCE(logit, 0) = -softplus(logit)."""
        if self.g_loss == "nonsaturating":
            return F.binary_cross_entropy_with_logits(logits, 1.0)
        return -F.binary_cross_entropy_with_logits(logits, 0.0)

    def g_step(self, m):
        """Non-saturating: ascend grad_theta_g 1/m sum log D(G(z)), i.e.
        descend -log D(G(z)) (or, minimax, descend log(1 - D(G(z)))). Only G's
        optimizer steps (D's gradients from this backward are cleared before
        D's next step)."""
        z = self.sample_noise(m)
        loss = self.g_loss_of(self.D(self.G(z)))
        self.opt_g.zero_grad()
        loss.backward()
        self.opt_g.step()
        return loss.item()

    def set_lr(self, factor):
        """Both learning rates at ``factor`` times their initial values."""
        self.opt_d.lr, self.opt_g.lr = factor * self.lr_d, factor * self.lr_g

    # what we report
    def generate(self, n, seed=123):
        with npgan.no_grad():
            return self.G(self.noise_from(np.random.default_rng(seed), n)).numpy().ravel()

    def discriminate(self, x):
        """D's probability (not logit) for each x, a 1-D host array."""
        with npgan.no_grad():
            return F.sigmoid(self.D(np.asarray(x, dtype="float32").reshape(-1, 1))).numpy().ravel()

    def summary(self, n=100_000):
        fake = self.generate(n)
        real = np.random.default_rng(456).normal(self.data_mean, self.data_std, n)
        return {"g_mean": float(fake.mean()), "g_std": float(fake.std()),
                "d_real": float(self.discriminate(real).mean()),
                "d_fake": float(self.discriminate(fake).mean())}


def lr_factor(step, steps, decay_from=0.5):
    """1 for the first half of the run, then linearly down to 0 at the last step."""
    start = int(decay_from * steps)
    return 1.0 if step < start else (steps - step) / max(steps - start, 1)


def train(gan, steps, k=1, m=256, log_every=0, callback=None):
    """Algorithm 1 (Goodfellow et al., 2014):

        for number of training iterations do
            for k steps do
                sample m noise samples {z} from p_g(z), m examples {x} from p_data(x)
                update D by ascending its stochastic gradient
            end for
            sample m noise samples {z} from p_g(z)
            update G by descending its stochastic gradient (here: the non-saturating form)
        end for

    callback(step, gan) is called before the first step and after each one."""
    if callback is not None:
        callback(0, gan)
    t0 = time.time()
    for step in range(steps):
        gan.set_lr(lr_factor(step, steps))
        for _ in range(k):
            d_loss = gan.d_step(m)
        g_loss = gan.g_step(m)
        if callback is not None:
            callback(step + 1, gan)
        if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
            s = gan.summary(20_000)
            print(f"step {step + 1:5d}  D loss {d_loss:.3f}  G loss {g_loss:.3f}  "
                  f"p_g mean {s['g_mean']:.3f} std {s['g_std']:.3f}  "
                  f"D(x) {s['d_real']:.3f}  D(G(z)) {s['d_fake']:.3f}  ({time.time() - t0:.0f}s)",
                  flush=True)
    return gan


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=6000, help="training iterations (G steps)")
    p.add_argument("--k", type=int, default=1, help="D steps per G step")
    p.add_argument("--batch", type=int, default=256, help="minibatch size m")
    p.add_argument("--lr-d", type=float, default=2e-3, help="D's Adam learning rate")
    p.add_argument("--lr-g", type=float, default=5e-4, help="G's Adam learning rate")
    p.add_argument("--noise", choices=["normal", "uniform"], default="normal", help="p_z")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    """Train, print the comparison, return the final numbers (a dict)."""
    args = parse_args(argv)
    t0 = time.time()
    gan = GaussianGAN(seed=args.seed, lr_d=args.lr_d, lr_g=args.lr_g, noise=args.noise)
    if not args.quiet:
        prior = "N(0, 1)" if args.noise == "normal" else "U(-1, 1)"
        print(f"data N({gan.data_mean}, {gan.data_std}^2); z ~ {prior}; {args.steps} iterations, "
              f"k = {args.k}, m = {args.batch}, seed {args.seed}")
    train(gan, args.steps, k=args.k, m=args.batch, log_every=0 if args.quiet else max(args.steps // 10, 1))
    s = gan.summary()
    s["seconds"] = time.time() - t0
    if not args.quiet:
        print("\n            mean     std")
        print(f"p_data    {gan.data_mean:6.3f}  {gan.data_std:6.3f}")
        print(f"p_g       {s['g_mean']:6.3f}  {s['g_std']:6.3f}   (100,000 samples)")
        print(f"mean D(x) on data {s['d_real']:.3f}, on samples {s['d_fake']:.3f}   (1/2 at the optimum)")
        print(f"{s['seconds']:.1f} s")
    return s


if __name__ == "__main__":
    main(sys.argv[1:])
