"""Proposition 1: for a fixed G, the best D is D*(x) = p_data(x) / (p_data(x) + p_g(x)).

    python examples/optimal_discriminator.py            # ~20 s on 2 cores
    python examples/optimal_discriminator.py --steps 1000 --out /tmp/figs

p_g is held fixed (a known 1-D density: a two-component Gaussian mixture,
standing in for a G that is not trained here), p_data = N(0, 1). A small MLP D
(1 -> 32 -> 32 -> 1 logit, tanh) is trained to maximise

    V(D) = E_{x~p_data}[log D(x)] + E_{x~p_g}[log(1 - D(x))]

on fresh samples of both densities at every step, i.e. it minimises the binary
cross-entropy of its logits (real -> 1, generated -> 0). Nothing in training
tells D about densities, yet it ends up computing their ratio: the plot shows
the trained D against D* computed from the two formulas, and V(D) (by
quadrature on a grid, no sampling noise) climbing to its maximum
V(D*) = C(G) = -log 4 + 2 JSD(p_data || p_g) (Theorem 1).
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
from npgan import plots, nn, optim, theory, functional as F  # noqa: E402

# the two fixed densities: p_data = N(0, 1); p_g = 0.6 N(-1.5, 0.5^2) + 0.4 N(2, 0.8^2)
DATA = (0.0, 1.0)
G_MEANS, G_STDS, G_WEIGHTS = (-1.5, 2.0), (0.5, 0.8), (0.6, 0.4)


def sample_p_g(rng, m):
    k = rng.choice(len(G_MEANS), size=m, p=np.asarray(G_WEIGHTS) / sum(G_WEIGHTS))
    return (np.take(G_MEANS, k) + np.take(G_STDS, k) * rng.standard_normal(m)).astype("float32")


def sample_p_data(rng, m):
    return (DATA[0] + DATA[1] * rng.standard_normal(m)).astype("float32")


def densities(x):
    return theory.gaussian_pdf(x, *DATA), theory.mixture_pdf(x, G_MEANS, G_STDS, G_WEIGHTS)


def make_d(rng, hidden=32):
    return nn.Sequential(nn.Linear(1, hidden, init="xavier", rng=rng), nn.Tanh(),
                         nn.Linear(hidden, hidden, init="xavier", rng=rng), nn.Tanh(),
                         nn.Linear(hidden, 1, init="xavier", rng=rng))


def d_on(D, x):
    """D's probability on the grid x (host, float64) -> 1-D array."""
    with npgan.no_grad():
        return F.sigmoid(D(np.asarray(x, dtype="float32").reshape(-1, 1))).numpy().ravel().astype(np.float64)


def train_d(steps=3000, m=512, lr=3e-3, seed=0, x=None, record_every=50):
    """Train D on the fixed pair; returns (D, history of (step, V(D) by quadrature))."""
    rng = np.random.default_rng(seed)
    D = make_d(rng)
    opt = optim.Adam(D.parameters(), lr=lr, betas=(0.9, 0.999))
    x = theory.grid(-6, 6, 1201) if x is None else x
    p_data, p_g = densities(x)
    hist = []
    for step in range(steps + 1):
        if step % record_every == 0 or step == steps:
            hist.append((step, theory.value_function(x, p_data, p_g, D=d_on(D, x))))
        if step == steps:
            break
        opt.lr = lr * min(1.0, 2.0 * (steps - step) / steps)   # constant, then to 0 over the 2nd half
        xr, xf = sample_p_data(rng, m), sample_p_g(rng, m)
        # maximise V  <=>  minimise BCE(D(x_real), 1) + BCE(D(x_fake), 0), from logits
        loss = F.binary_cross_entropy_with_logits(D(xr.reshape(-1, 1)), 1.0) \
            + F.binary_cross_entropy_with_logits(D(xf.reshape(-1, 1)), 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return D, hist


def errors(D, x=None, mass=0.01):
    """How far D is from D*: max |D - D*| where (p_data + p_g) / 2 > ``mass``,
    and the mean |D - D*| weighted by (p_data + p_g) / 2."""
    x = theory.grid(-6, 6, 1201) if x is None else x
    p_data, p_g = densities(x)
    d, d_star = d_on(D, x), theory.optimal_discriminator(p_data, p_g)
    w = 0.5 * (p_data + p_g)
    err = np.abs(d - d_star)
    return {"max_abs": float(err[w > mass].max()), "weighted_mean_abs": float(theory.integrate(err * w, x))}


def draw(D, hist, path):
    plt = plots.pyplot()

    x = theory.grid(-5, 5, 1001)
    p_data, p_g = densities(x)
    d_star = theory.optimal_discriminator(p_data, p_g)
    c = theory.virtual_criterion(x, p_data, p_g)
    js = theory.jsd(x, p_data, p_g)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1.6, 1]})
    a0.plot(x, p_data, ":", color="black", lw=2, label=r"$p_{data}$ = N(0, 1)")
    a0.plot(x, p_g, "-", color="green", lw=2, label=r"$p_g$ (fixed mixture)")
    a0.plot(x, d_star, "-", color="orange", lw=4, alpha=0.6, label=r"$D^*(x) = p_{data}/(p_{data}+p_g)$")
    a0.plot(x, d_on(D, x), "--", color="tab:blue", lw=2, label="trained D(x)")
    scarce = 0.5 * (p_data + p_g) < 0.01
    a0.fill_between(x, 0, 1, where=scarce, color="0.9", zorder=0,
                    label="(p_data + p_g)/2 < 0.01:\nfew samples, D* barely matters")
    a0.set_xlabel("x")
    a0.set_ylabel("density  /  probability 'x is real'")
    a0.set_title("Proposition 1: D trained by BCE on samples converges to $D^*$")
    a0.set_ylim(-0.02, 1.02)
    a0.legend(loc="upper right", fontsize=9)
    steps, v = zip(*hist)
    a1.semilogy(steps, c - np.asarray(v), color="tab:blue", lw=2)
    a1.set_xlabel("D step")
    a1.set_ylabel("V(D*, G) - V(D, G)  (nats, log scale)")
    a1.set_title("The gap to the maximum closes\n"
                 f"V(D*) = C(G) = {c:.4f} = -log 4 + 2 JSD ({-np.log(4) + 2 * js:.4f})", fontsize=10)
    a1.grid(True, which="both", alpha=0.3)
    plots.save(fig, path)


def parse_args(argv=None):
    p = plots.parser(__doc__, os.path.join(HERE, "..", "docs", "figures"))
    p.add_argument("--steps", type=int, default=3000, help="D steps")
    p.add_argument("--batch", type=int, default=512, help="samples of each density per step")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    D, hist = train_d(args.steps, args.batch, seed=args.seed)
    e = errors(D)
    x = theory.grid(-6, 6, 1201)
    p_data, p_g = densities(x)
    c = theory.virtual_criterion(x, p_data, p_g)
    print(f"after {args.steps} D steps: max |D - D*| = {e['max_abs']:.4f} where (p_data + p_g)/2 > 0.01; "
          f"mass-weighted mean |D - D*| = {e['weighted_mean_abs']:.4f}")
    print(f"V(D) = {hist[-1][1]:.5f}   V(D*) = C(G) = {c:.5f}   -log 4 + 2 JSD = "
          f"{theory.criterion_from_jsd(theory.jsd(x, p_data, p_g)):.5f}")
    out = {"errors": e, "V": hist[-1][1], "V_star": c, "seconds": time.time() - t0}
    if not args.no_plot:
        path = os.path.join(args.out, "optimal_discriminator.png")
        draw(D, hist, path)
        print(f"wrote {path}")
    print(f"{time.time() - t0:.1f} s")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
