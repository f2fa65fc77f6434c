"""Mode collapse on a ring of 8 Gaussians, with k = 1 and k > 1 D-steps.

    python examples/mode_collapse.py                      # both runs, ~2 min on 2 cores
    python examples/mode_collapse.py --ks 1 5 --steps 3000 --out docs/figures/

Data: an equal mixture of 8 Gaussians with centres on a circle of radius 2,
each with standard deviation 0.02 -- a standard toy problem for watching
"the Helvetica scenario" of the paper (Section 6: G collapses too many values
of z to the same x). G (z in R^16 -> 64 -> 64 -> 2, ReLU) and D (2 -> 64 -> 64
-> 1 logit, ReLU) are small MLPs trained by Algorithm 1 (npgan.train.GANTrainer,
drawing each batch from the ring) with Adam: k steps of D, then one step of G
with the non-saturating loss -log D(G(z)), all losses computed from logits.

Two numbers are tracked over training, on fresh samples from G
(npgan.metrics.modes.mode_metrics):
  * modes covered: a mode counts as covered if at least ``min_frac`` of the
    samples are high quality and nearest to it;
  * high-quality fraction: the share of samples within 3 std of their nearest centre.
A G that sits on a few modes has a high quality fraction but few modes; one
that smears between modes covers them but with low quality. With these
defaults (seed 0) G collapses onto a single mode in both runs: more
D-steps per G-step do not cure it (``--std 0.05 --z-dim 2`` covers all 8).

Writes mode_collapse.png (sample clouds at a few moments for each k, and the
two metrics over training) to --out.
"""
import argparse
import os
import sys
import time

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
if __name__ == "__main__":   # as a script only (importing it must not change the settings):
    # tiny matrices: one BLAS thread is fastest, and 8x faster than many on busy shared cores
    npgan.settings.configure(blas_threads=1, gemm_split=False)
from npgan import nn, optim, plots, toys  # noqa: E402
from npgan.train import GANTrainer  # noqa: E402

# the ring, its data and the two numbers: one implementation, in the package
from npgan.metrics.modes import RADIUS, STD, mode_metrics, ring_centers, sample_ring  # noqa: E402,F401


# ---- models and Algorithm 1 ---------------------------------------------------
MLP = toys.ReLUMLP      # in -> hidden -> hidden -> out, ReLU between (one home: npgan.toys)


def train(k, steps, seed=0, batch=256, lr=1e-3, hidden=64, z_dim=16, eval_every=100,
          n_eval=2000, snap_at=(), min_frac=0.01, std=STD, log=print):
    """Algorithm 1 with ``k`` D-steps per G-step for ``steps`` G-steps.
    Returns {"step", "modes", "hq"} lists (every eval_every G-steps) and
    {"snapshots": {step: samples}} for the steps in snap_at."""
    rng = np.random.default_rng(seed)                   # init, then every draw of the run
    G = MLP([z_dim, hidden, hidden, 2], rng)
    D = MLP([2, hidden, hidden, 1], rng)
    opt_g = optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    centers = ring_centers()
    sample_z = toys.noise("gaussian", z_dim)
    z_eval = sample_z(n_eval, rng)                      # fixed z to follow G
    trainer = GANTrainer(G, D, lambda m, r: sample_ring(m, r, centers, std),
                         batch_size=batch, k=k, simultaneous=False, opt_g=opt_g,
                         opt_d=opt_d, sample_z=sample_z, d_scale=1.0, generator=rng)
    hist = {"step": [], "modes": [], "hq": [], "snapshots": {}}

    def evaluate(step):
        with npgan.no_grad():
            s = G(z_eval).numpy()
        hist["step"].append(step)
        m = mode_metrics(s, centers, std, min_fraction=min_frac)
        hist["modes"].append(m["modes_covered"])
        hist["hq"].append(m["high_quality_fraction"])
        if step in snap_at:
            hist["snapshots"][step] = s
        if step % (eval_every * 10) == 0:
            log(f"  k={k} step {step:5d}: modes {hist['modes'][-1]}/8, HQ {hist['hq'][-1]:.2f}")

    evaluate(0)
    for step in range(1, steps + 1):
        for _ in range(k):              # k steps of D (z, then x from the ring); the k-th
            trainer.step()              # is followed by one step of G (D frozen)
        if step % eval_every == 0:
            evaluate(step)
    return hist


def plot(runs, snap_at, path, std=STD, min_frac=0.01):
    plt = plots.pyplot()
    centers = ring_centers()
    ks = sorted(runs)
    ncol = len(snap_at)
    fig = plt.figure(figsize=(2.6 * ncol, 2.6 * len(ks) + 3.0))
    gs = fig.add_gridspec(len(ks) + 1, ncol, height_ratios=[1] * len(ks) + [1.15])
    colors = {k: c for k, c in zip(ks, ["tab:red", "tab:blue", "tab:green", "tab:purple"])}
    for r, k in enumerate(ks):
        for c, step in enumerate(snap_at):
            ax = fig.add_subplot(gs[r, c])
            s = runs[k]["snapshots"][step]
            ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.4, color=colors[k], lw=0)
            ax.scatter(centers[:, 0], centers[:, 1], s=25, marker="x", color="k", lw=1)
            i = runs[k]["step"].index(step)
            ax.set_title(f"k={k}, G-step {step}\nmodes {runs[k]['modes'][i]}/8, "
                         f"HQ {runs[k]['hq'][i]:.2f}", fontsize=8)
            ax.set_xlim(-3, 3)
            ax.set_ylim(-3, 3)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=6)
    half = max(ncol // 2, 1)
    ax_m = fig.add_subplot(gs[-1, :half])
    ax_q = fig.add_subplot(gs[-1, half:])
    for k in ks:
        ax_m.plot(runs[k]["step"], runs[k]["modes"], color=colors[k], label=f"k={k} D-steps per G-step")
        ax_q.plot(runs[k]["step"], runs[k]["hq"], color=colors[k], label=f"k={k} D-steps per G-step")
    ax_m.set_ylim(-0.3, 8.3)
    ax_m.set_xlabel("G-step")
    ax_m.set_ylabel("modes covered (of 8)")
    ax_m.set_title(f"modes with >= {min_frac:.0%} of samples within 3 std", fontsize=9)
    ax_q.set_ylim(-0.03, 1.03)
    ax_q.set_xlabel("G-step")
    ax_q.set_ylabel("high-quality fraction")
    ax_q.set_title("samples within 3 std of any mode", fontsize=9)
    for ax in (ax_m, ax_q):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"GAN on 8 Gaussians (radius {RADIUS}, std {std}): samples of G (dots) "
                 "and mode centres (x)", fontsize=10)
    plots.save(fig, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 5], help="D-steps per G-step, one run each")
    ap.add_argument("--steps", type=int, default=3000, help="G-steps per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=STD, help="std of each mixture component")
    ap.add_argument("--z-dim", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--snapshots", type=int, default=4, help="sample clouds shown per run")
    ap.add_argument("--out", default="docs/figures/")
    args = ap.parse_args(argv)
    ev = args.eval_every
    snap_at = sorted({int(round(f * args.steps / ev)) * ev
                      for f in np.linspace(0, 1, args.snapshots + 1)[1:]} | {0})
    snap_at = snap_at[-args.snapshots:] if len(snap_at) > args.snapshots else snap_at
    runs = {}
    for k in args.ks:
        t0 = time.time()
        runs[k] = train(k, args.steps, seed=args.seed, lr=args.lr, z_dim=args.z_dim, std=args.std,
                        eval_every=ev, snap_at=snap_at)
        print(f"k={k}: {args.steps} G-steps in {time.time() - t0:.1f} s; final modes "
              f"{runs[k]['modes'][-1]}/8, HQ {runs[k]['hq'][-1]:.2f}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "mode_collapse.png")
    plot(runs, snap_at, path, std=args.std)
    print("wrote", path)


if __name__ == "__main__":
    main()
