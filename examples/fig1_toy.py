"""Fig. 1 of the paper, from a real training run: p_data, p_g and D(x) as training goes.

    python examples/fig1_toy.py                       # ~15 s on 2 cores -> docs/figures/fig1_toy.png
    python examples/fig1_toy.py --seed 1 --out /tmp/figs

The GAN of gaussian_gan.py, ``npgan.toys.gaussian_gan`` (G, D: 1 -> 16 -> 16 -> 1
tanh MLPs, Algorithm 1, non-saturating G loss, Adam, z ~ N(0, 1)). Each panel shows, at one moment
of training:

  * the data density p_data = N(4, 1.25^2) (black, dotted),
  * p_g, a kernel density estimate of 50,000 samples G(z) (green, solid),
  * D(x), the discriminator's probability that x is real (blue, dashed),
  * D*(x) = p_data / (p_data + p_g) for the p_g of that moment (thin grey,
    drawn where p_data + p_g > 0.002),
  * underneath, as in the paper: the line z (bottom) is mapped by x = G(z)
    onto the line x (top). The arrows start at the 2.5 %, 7.5 %, ..., 97.5 %
    quantiles of p_z, so each carries 5 % of the probability (the paper's
    sketch uses a uniform z at equal spacing, which is the same thing): where
    the arrow heads crowd together p_g is high.

Early on D separates the two densities; as G moves p_g onto p_data, D flattens
towards 1/2 (Theorem 1: the equilibrium is p_g = p_data, D = 1/2).
"""
import os
import sys
import time

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # run from a checkout
import npgan  # noqa: E402
if __name__ == "__main__":   # tiny matrices: one BLAS thread is fastest on busy shared cores
    npgan.settings.configure(blas_threads=1, gemm_split=False)
from npgan import plots, models, theory, toys  # noqa: E402

X_LO, X_HI = -1.0, 9.0
# the 2.5 %, 7.5 %, ..., 97.5 % quantiles of N(0, 1): 20 arrows of 5 % mass each
Z_QUANTILES = np.array([-1.95996, -1.43953, -1.15035, -0.93459, -0.75542, -0.59776, -0.45376,
                        -0.31864, -0.18912, -0.06271, 0.06271, 0.18912, 0.31864, 0.45376,
                        0.59776, 0.75542, 0.93459, 1.15035, 1.43953, 1.95996])


def snapshot(trainer, x, prior, n=50_000):
    """What one panel needs, computed now (G and D change later)."""
    samples = trainer.generate(n, rng=np.random.default_rng(123), batch=n).ravel()
    p_data = theory.gaussian_pdf(x, toys.DATA_MEAN, toys.DATA_STD)
    p_g = theory.kde(samples, x)
    z_lines = Z_QUANTILES if prior == "gaussian" else np.linspace(-0.95, 0.95, 20) * models.Z_RANGE
    return {"p_data": p_data, "p_g": p_g, "D": toys.discriminate(trainer.D, x),
            "D_star": theory.optimal_discriminator(p_data, p_g),
            "z": z_lines, "Gz": _g_of(trainer.G, z_lines),
            "mean": float(samples.mean()), "std": float(samples.std()),
            "jsd": theory.jsd(x, p_data, p_g)}


def _g_of(G, z):
    """G at the given noise values (1-D host array in, 1-D out)."""
    with npgan.no_grad():
        return G(np.asarray(z, dtype="float32").reshape(-1, 1)).numpy().ravel()


def draw(panels, x, path, data_mean, data_std):
    plt = plots.pyplot()
    import matplotlib.lines

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), sharey=True)
    y_x, y_z = -0.13, -0.33            # heights of the x and z lines under the plot
    # z drawn at x = data_mean +- data_std * z: at the equilibrium G is (close to) that map, so
    # its arrows are vertical. G may as well learn the mirrored map (p_z is symmetric): the
    # sign is taken from the last panel's G, and the z line's ends are labelled.
    last = panels[-1][1]
    sign = 1.0 if last["Gz"][-1] >= last["Gz"][0] else -1.0
    z_to_plot = lambda z: data_mean + sign * data_std * np.asarray(z)
    for ax, (title, s) in zip(np.atleast_1d(axes), panels):
        ax.plot(x, s["p_data"], ":", color="black", lw=2, label=r"$p_{data}$")
        ax.plot(x, s["p_g"], "-", color="green", lw=2, label=r"$p_g$ (KDE of G(z))")
        ax.plot(x, s["D"], "--", color="tab:blue", lw=2, label="D(x)")
        d_star = np.where(s["p_data"] + s["p_g"] > 1e-2, s["D_star"], np.nan)
        ax.plot(x, d_star, "-", color="grey", lw=1, alpha=0.9,
                label=r"$D^*(x)=p_{data}/(p_{data}+p_g)$")
        ax.axhline(0.5, color="tab:blue", lw=0.5, alpha=0.4)
        # the mapping x = G(z), as in the paper's sketch
        ax.plot([X_LO, X_HI], [y_x, y_x], color="black", lw=1)
        zx = z_to_plot(s["z"])
        ax.plot([z_to_plot(-3), z_to_plot(3)], [y_z, y_z], color="black", lw=1)
        for z0, gx in zip(zx, s["Gz"]):
            if X_LO <= gx <= X_HI:
                ax.annotate("", xy=(gx, y_x), xytext=(z0, y_z),
                            arrowprops=dict(arrowstyle="-|>", lw=0.6, color="0.35", shrinkA=0, shrinkB=0))
        ax.text(X_LO + 0.1, y_x + 0.02, "x", fontsize=9)
        ax.text(min(z_to_plot(-3), z_to_plot(3)) - 0.35, y_z - 0.015, "z", fontsize=9)
        for zv in (-3, 3):
            ax.text(z_to_plot(zv), y_z + 0.012, f"{zv:+d}", fontsize=7, ha="center", va="bottom")
        ax.set_xlim(X_LO, X_HI)
        ax.set_ylim(-0.4, 1.05)
        ax.set_xlabel("x")
        ax.set_title(f"{title}\np_g: mean {s['mean']:.2f}, std {s['std']:.2f}; JSD {s['jsd']:.3f}",
                     fontsize=10)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    axes[0].set_ylabel("density  /  D(x)")
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(matplotlib.lines.Line2D([], [], color="0.35", lw=0.8, marker=">", markersize=4))
    labels.append("x = G(z), one arrow per 5 % of p_z")
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=9, frameon=False)
    fig.suptitle(f"Fig. 1 from a training run: p_data = N({data_mean}, {data_std}$^2$), z ~ N(0, 1); "
                 "p_g moves onto p_data and D flattens to 1/2", fontsize=11)
    plots.save(fig, path, rect=(0, 0.07, 1, 1))


def parse_args(argv=None):
    p = plots.parser(__doc__, os.path.join(HERE, "..", "docs", "figures"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=6000, help="training iterations (G steps)")
    p.add_argument("--moments", type=float, nargs="+", default=[0.0, 0.02, 0.1, 1.0],
                   help="fractions of --steps at which to draw a panel")
    p.add_argument("--noise", choices=list(models.Z_PRIORS), default="gaussian",
                   help="p_z (uniform: as the paper's sketch, but G fits the tails poorly)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    x = theory.grid(X_LO, X_HI, 801)
    trainer = toys.gaussian_gan(seed=args.seed, steps=args.steps, prior=args.noise)
    at = sorted({int(round(f * args.steps)) for f in args.moments})
    panels = []
    for step in range(args.steps + 1):
        if step > 0:
            trainer.step()                     # k = 1: a D step, then a G step
        if step in at:
            s = snapshot(trainer, x, args.noise)
            panels.append((f"step {step}" if step else "initialisation", s))
            print(f"step {step:5d}: p_g mean {s['mean']:.3f} std {s['std']:.3f}, JSD(p_data, p_g) "
                  f"{s['jsd']:.4f}, D on [2, 4, 6]: {np.round(toys.discriminate(trainer.D, [2, 4, 6]), 3)}",
                  flush=True)
    path = os.path.join(args.out, "fig1_toy.png")
    if not args.no_plot:
        draw(panels, x, path, toys.DATA_MEAN, toys.DATA_STD)
        print(f"wrote {path} ({time.time() - t0:.0f} s)")
    return {"panels": panels, "path": path}


if __name__ == "__main__":
    main(sys.argv[1:])
