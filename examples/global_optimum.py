"""Theorem 1: C(G) = max_D V(G, D) = -log 4 + 2 JSD(p_data || p_g), minimal iff p_g = p_data.

    python examples/global_optimum.py                  # ~2 s -> docs/figures/global_optimum.png

No training here: for pairs of 1-D densities on a grid, V(G, D*) is evaluated
by quadrature straight from its definition,

    V(G, D*) = int p_data(x) log D*(x) + p_g(x) log(1 - D*(x)) dx,
    D*(x) = p_data(x) / (p_data(x) + p_g(x))                (Proposition 1),

and compared with -log 4 + 2 JSD(p_data || p_g), the JSD computed separately
(as 1/2 KL(p_data || m) + 1/2 KL(p_g || m)). The two agree to rounding for
every pair. Sliding p_g = N(mu, 1) across p_data = N(0, 1), and widening
p_g = N(0, s^2), shows the minimum -log 4 exactly at p_g = p_data (mu = 0,
s = 1), and the ceiling 0 (JSD = log 2) when the two no longer overlap.
"""
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # run from a checkout
from npgan import plots, theory  # noqa: E402

X = theory.grid(-60, 60, 60001)     # wide enough for N(0, 10^2), fine enough for N(0, 0.05^2)


def pairs():
    """(name, p_data, p_g) on the grid X: a few shapes, equal and unequal."""
    g = theory.gaussian_pdf
    mix = theory.mixture_pdf(X, (-2.0, 2.0), (0.5, 0.5))
    return [
        ("N(0,1) vs N(0,1)", g(X, 0, 1), g(X, 0, 1)),
        ("N(0,1) vs N(1,1)", g(X, 0, 1), g(X, 1, 1)),
        ("N(0,1) vs N(0,2^2)", g(X, 0, 1), g(X, 0, 2)),
        ("N(0,1) vs N(3,0.5^2)", g(X, 0, 1), g(X, 3, 0.5)),
        ("N(0,1) vs mixture N(+-2,0.5^2)", g(X, 0, 1), mix),
        ("mixture vs N(0, 2^2)", mix, g(X, 0, 2)),
        ("N(0,0.1^2) vs N(10,0.1^2)", g(X, 0, 0.1), g(X, 10, 0.1)),
    ]


def table():
    rows = []
    for name, p, q in pairs():
        v = theory.virtual_criterion(X, p, q)
        js = theory.jsd(X, p, q)
        rows.append((name, v, float(theory.criterion_from_jsd(js)), js))
    return rows


def sweep_shift(mus):
    p = theory.gaussian_pdf(X, 0, 1)
    return np.array([theory.virtual_criterion(X, p, theory.gaussian_pdf(X, m, 1)) for m in mus]), \
        np.array([theory.criterion_from_jsd(theory.jsd(X, p, theory.gaussian_pdf(X, m, 1))) for m in mus])


def sweep_scale(scales):
    p = theory.gaussian_pdf(X, 0, 1)
    return np.array([theory.virtual_criterion(X, p, theory.gaussian_pdf(X, 0, s)) for s in scales]), \
        np.array([theory.criterion_from_jsd(theory.jsd(X, p, theory.gaussian_pdf(X, 0, s))) for s in scales])


def draw(path):
    plt = plots.pyplot()

    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(15, 4.4))
    x = theory.grid(-5, 7, 1201)
    p = theory.gaussian_pdf(x, 0, 1)
    a0.plot(x, p, ":", color="black", lw=2.5, label=r"$p_{data}$ = N(0, 1)")
    for mu, col in zip((-2.5, 3.0), ("tab:green", "tab:purple")):
        q = theory.gaussian_pdf(x, mu, 1)
        a0.plot(x, q, "-", color=col, lw=1.8, label=f"$p_g$ = N({mu}, 1)")
        a0.plot(x, theory.optimal_discriminator(p, q), "--", color=col, lw=1.2, label=f"D* for mu = {mu}")
    a0.set_xlabel("x")
    a0.set_ylabel("density  /  D*(x)")
    a0.set_title("A family p_g = N(mu, 1) and its optimal discriminators")
    a0.legend(fontsize=8, loc="upper center", ncol=3, handlelength=1.6, columnspacing=1.0)
    a0.set_ylim(-0.02, 1.3)

    mus = np.linspace(-6, 6, 121)
    v, c = sweep_shift(mus)
    a1.plot(mus, c, "-", color="tab:blue", lw=2, label=r"$-\log 4 + 2\,JSD(p_{data}\|p_g)$")
    a1.plot(mus[::6], v[::6], "o", color="orange", ms=6, label=r"$V(G, D^*)$ by quadrature")
    a1.axhline(-np.log(4), color="black", lw=1, ls="--", label=r"$-\log 4$ (global minimum)")
    a1.axhline(0, color="grey", lw=1, ls=":", label=r"0: disjoint supports, JSD = log 2")
    a1.set_xlabel(r"mu  (p_g = N(mu, 1), p_data = N(0, 1))")
    a1.set_ylabel("C(G) = max_D V(G, D)  (nats)")
    a1.set_title("Theorem 1: C(G) is minimal exactly at p_g = p_data")
    a1.legend(fontsize=8, loc="center right")

    scales = np.exp(np.linspace(np.log(0.05), np.log(10), 121))
    v, c = sweep_scale(scales)
    a2.semilogx(scales, c, "-", color="tab:blue", lw=2, label=r"$-\log 4 + 2\,JSD$")
    a2.semilogx(scales[::6], v[::6], "o", color="orange", ms=6, label=r"$V(G, D^*)$ by quadrature")
    a2.axhline(-np.log(4), color="black", lw=1, ls="--", label=r"$-\log 4$")
    a2.axhline(0, color="grey", lw=1, ls=":")
    a2.axvline(1, color="black", lw=0.6, alpha=0.5)
    a2.set_xlabel("s  (p_g = N(0, s^2), log scale)")
    a2.set_ylabel("C(G)  (nats)")
    a2.set_title("The same for the spread: minimum at s = 1")
    a2.legend(fontsize=8, loc="upper center")
    plots.save(fig, path)


def main(argv=None):
    t0 = time.time()
    args = plots.parser(__doc__, os.path.join(HERE, "..", "docs", "figures")).parse_args(argv)
    rows = table()
    print(f"{'p_data vs p_g':34s} {'V(G, D*)':>12s} {'-log4 + 2 JSD':>14s} {'difference':>11s} {'JSD':>8s}")
    for name, v, c, js in rows:
        print(f"{name:34s} {v:12.8f} {c:14.8f} {v - c:11.1e} {js:8.5f}")
    print(f"minimum possible: -log 4 = {-np.log(4):.8f}; maximum: 0 (JSD = log 2 = {np.log(2):.5f})")
    if not args.no_plot:
        path = os.path.join(args.out, "global_optimum.png")
        draw(path)
        print(f"wrote {path}")
    print(f"{time.time() - t0:.1f} s")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
