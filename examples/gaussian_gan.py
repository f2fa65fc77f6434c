"""The paper's Fig. 1 setting: a GAN that learns a 1-D Gaussian.

    python examples/gaussian_gan.py                 # ~10 s on 2 cores
    python examples/gaussian_gan.py --seed 3 --steps 4000

Data: x ~ N(4, 1.25^2). Noise: z ~ N(0, 1), one number. G and D are small
MLPs (1 -> 16 -> 16 -> 1, tanh); D outputs a logit and every loss is computed
from logits.

The game is ``npgan.toys.gaussian_gan``: a GANTrainer that draws z and x itself,
so the loop below is Algorithm 1 as the paper's box reads: k steps of D, then
one step of G with the non-saturating loss -log D(G(z)) (Section 3). Both
players use Adam; D learns 4x faster than G (lr 2e-3 vs 5e-4) and both rates
decay linearly to zero over the second half of the run. Without those two
choices the players circle the equilibrium: D(x) ~ 1/2 on average while p_g's
spread swings between 0.6 and 1.9 (try --lr-d 5e-4 --lr-g 5e-4). At the end
the fitted p_g's mean and standard deviation match the data's, and D can no
longer tell them apart: D(x) ~ 1/2 (Theorem 1: p_g = p_data, D* = 1/2).

Why z ~ N(0, 1) and not uniform as in Fig. 1's sketch: from a uniform z, G
must learn the Gaussian's inverse CDF, which runs off to infinity at the ends;
a tanh MLP gets the middle right but not the tails, and the standard
deviation (a tail-sensitive number) wanders (try --noise uniform).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
from npgan import toys  # noqa: E402


def summary(trainer, n=100_000):
    """p_g's mean and std on n samples (z from a fixed seed), mean D on data and on samples."""
    fake = trainer.generate(n, rng=np.random.default_rng(123), batch=n).ravel()
    real = toys.gaussian()(n, np.random.default_rng(456)).ravel()
    return {"g_mean": float(fake.mean()), "g_std": float(fake.std()),
            "d_real": float(toys.discriminate(trainer.D, real).mean()),
            "d_fake": float(toys.discriminate(trainer.D, fake).mean())}


def train(trainer, steps, log_every=0, callback=None):
    """Algorithm 1 (Goodfellow et al., 2014):

        for number of training iterations do
            for k steps do
                sample m noise samples {z} from p_g(z), m examples {x} from p_data(x)
                update D by ascending its stochastic gradient
            end for
            sample m noise samples {z} from p_g(z)
            update G by descending its stochastic gradient (here: the non-saturating form)
        end for

    ``trainer.step()`` is one pass of the inner loop; the k-th also updates G.
    callback(step, trainer) is called before the first iteration and after each one."""
    if callback is not None:
        callback(0, trainer)
    t0 = time.time()
    for step in range(steps):
        for _ in range(trainer.k):
            stats = trainer.step()
        if callback is not None:
            callback(step + 1, trainer)
        if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
            s = summary(trainer, 20_000)
            print(f"step {step + 1:5d}  D loss {stats['d_loss']:.3f}  G loss {stats['g_loss']:.3f}  "
                  f"p_g mean {s['g_mean']:.3f} std {s['g_std']:.3f}  "
                  f"D(x) {s['d_real']:.3f}  D(G(z)) {s['d_fake']:.3f}  ({time.time() - t0:.0f}s)",
                  flush=True)
    return trainer


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=6000, help="training iterations (G steps)")
    p.add_argument("--k", type=int, default=1, help="D steps per G step")
    p.add_argument("--batch", type=int, default=256, help="minibatch size m")
    p.add_argument("--lr-d", type=float, default=2e-3, help="D's Adam learning rate")
    p.add_argument("--lr-g", type=float, default=5e-4, help="G's Adam learning rate")
    p.add_argument("--noise", choices=["gaussian", "uniform"], default="gaussian",
                   help="p_z: N(0, 1) or U(-sqrt 3, sqrt 3)")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    """Train, print the comparison, return the final numbers (a dict)."""
    args = parse_args(argv)
    t0 = time.time()
    trainer = toys.gaussian_gan(seed=args.seed, steps=args.steps, k=args.k, batch_size=args.batch,
                                lr_d=args.lr_d, lr_g=args.lr_g, prior=args.noise)
    if not args.quiet:
        prior = "N(0, 1)" if args.noise == "gaussian" else "U(-sqrt 3, sqrt 3)"
        print(f"data N({toys.DATA_MEAN}, {toys.DATA_STD}^2); z ~ {prior}; {args.steps} iterations, "
              f"k = {args.k}, m = {args.batch}, seed {args.seed}")
    train(trainer, args.steps, log_every=0 if args.quiet else max(args.steps // 10, 1))
    s = summary(trainer)
    s["seconds"] = time.time() - t0
    if not args.quiet:
        print("\n            mean     std")
        print(f"p_data    {toys.DATA_MEAN:6.3f}  {toys.DATA_STD:6.3f}")
        print(f"p_g       {s['g_mean']:6.3f}  {s['g_std']:6.3f}   (100,000 samples)")
        print(f"mean D(x) on data {s['d_real']:.3f}, on samples {s['d_fake']:.3f}   (1/2 at the optimum)")
        print(f"{s['seconds']:.1f} s")
    return s


if __name__ == "__main__":
    main(sys.argv[1:])
