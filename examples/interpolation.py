"""Fig. 3 of the paper: digits along linear paths in z between random endpoints.

    python examples/interpolation.py --snapshot runs/paper/snapshots/G_ema0.999_epoch_0060.npz
    python examples/interpolation.py --snapshot PATH --rows 8 --steps 10 --seed 0 --out docs/figures/

Each row draws two z from G's prior (N(0, I) in R^100, or the run's own) and shows G at
``steps`` equally spaced points on the straight line between them, endpoints
included. Smooth changes from one digit to another indicate that G maps
nearby z to nearby images rather than memorising isolated training examples.
--snapshot is an .npz of a Generator's state_dict, as written under
runs/<run>/snapshots/ (and best_<G>.npz) by examples/mnist_gan.py;
--checkpoint is a trainer checkpoint (runs/<run>/checkpoint.npz), with
--which G (default) or --which ema0.9999 to pick the generator; both read by
npgan.sampling.load_generator. Writes interpolation.png.

    python examples/interpolation.py --checkpoint runs/paper/checkpoint.npz --which ema0.999
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
from npgan import images, models, sampling  # noqa: E402


def z_path(z0, z1, steps):
    """(steps, dim): z0 + t (z1 - z0) for t = 0, 1/(steps-1), ..., 1; the first
    row is exactly z0 and the last exactly z1."""
    z0, z1 = np.asarray(z0, dtype=np.float64), np.asarray(z1, dtype=np.float64)
    if steps < 2:
        raise ValueError(f"a path needs at least 2 steps (its endpoints), got {steps}")
    t = np.linspace(0.0, 1.0, steps)[:, None]
    path = (1.0 - t) * z0[None, :] + t * z1[None, :]
    path[0], path[-1] = z0, z1          # exact endpoints, whatever the rounding
    return path


def interpolation_grid_z(rows, steps, rng, dim=models.Z_DIM, prior="gaussian"):
    """(rows * steps, dim): ``rows`` paths between endpoints drawn from G's prior."""
    ends = models.sample_z(2 * rows, rng, dim=dim, dtype="float64", prior=prior)
    ends = npgan.backend.to_numpy(ends)
    return np.concatenate([z_path(ends[2 * r], ends[2 * r + 1], steps) for r in range(rows)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--snapshot", help=".npz of a Generator state_dict")
    src.add_argument("--checkpoint", help="a trainer checkpoint (runs/<run>/checkpoint.npz)")
    ap.add_argument("--which", default="G", help="with --checkpoint: G, or ema<decay> (e.g. ema0.9999)")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="images per path, endpoints included")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--z", choices=list(models.Z_PRIORS), default=None,
                    help="noise prior (default: a checkpoint's own; a snapshot: gaussian, the paper's)")
    ap.add_argument("--out", default="docs/figures/")
    args = ap.parse_args(argv)
    source = args.snapshot or args.checkpoint
    if args.snapshot and args.which != "G":
        ap.error(f"--which {args.which} needs a --checkpoint; a --snapshot holds one generator")
    G = sampling.load_generator(source, args.which)
    z = interpolation_grid_z(args.rows, args.steps, np.random.default_rng(args.seed),
                             prior=args.z or G.z_prior)
    with npgan.no_grad():
        x = G(npgan.backend.asarray(z.astype("float32"))).numpy()
    path = images.save_grid(x, os.path.join(args.out, "interpolation.png"), args.rows, args.steps,
                            scale=3)
    print(f"wrote {path} ({args.rows} paths x {args.steps} steps from {source}"
          + (f", {args.which})" if args.checkpoint else ")"))


if __name__ == "__main__":
    main()
