"""When p_g and p_data barely overlap, JSD is stuck at log 2 and its gradient vanishes.

    python examples/vanishing_jsd.py                   # ~3 s -> docs/figures/vanishing_jsd.png

Theorem 1 says that against the optimal D, G minimises C(G) = -log 4 + 2 JSD(p_data || p_g).
Take p_data = N(0, s^2) and p_g = N(theta, s^2), a G that can only shift its
output by theta. As theta grows beyond a few s the two densities stop
overlapping: JSD -> log 2 (C(G) -> 0) whatever theta is, and

    d JSD / d theta = 1/2 int (d p_g / d theta) log(2 p_g / (p_data + p_g)) dx

(theory.jsd_shift_gradient, checked here against finite differences of the
quadrature JSD) falls off like exp(-theta^2 / (8 s^2)). With point masses
(s -> 0) JSD is log 2 for every theta != 0: a G trained against the best
possible D would get no signal about which way the data lies. In practice D
is not optimal and G gets its gradient through D's logit (see
saturation.py); this is the regime where the non-saturating loss matters.
"""
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # run from a checkout
from npgan import plots, theory  # noqa: E402

X = theory.grid(-8, 14, 22001)      # dx = 0.001: resolves s = 0.1
SCALES = (1.0, 0.3, 0.1)


def jsd_and_grad(theta, s):
    """(JSD, d JSD / d theta) for p_data = N(0, s^2), p_g = N(theta, s^2)."""
    p = theory.gaussian_pdf(X, 0.0, s)
    q = theory.gaussian_pdf(X, theta, s)
    dq = q * (X - theta) / s ** 2
    return theory.jsd(X, p, q), theory.jsd_shift_gradient(X, p, q, dq)


def finite_difference(theta, s, h=1e-4):
    return (jsd_and_grad(theta + h, s)[0] - jsd_and_grad(theta - h, s)[0]) / (2 * h)


def curves(thetas):
    return {s: np.array([jsd_and_grad(t, s) for t in thetas]) for s in SCALES}


def draw(path, thetas, cs):
    plt = plots.pyplot()

    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(16, 4.5))
    x = theory.grid(-0.6, 2.4, 1501)
    s = 0.1
    p = theory.gaussian_pdf(x, 0, s)
    a0.plot(x, p, ":", color="black", lw=2, label=r"$p_{data}$ = N(0, 0.1$^2$)")
    for th, col in zip((0.15, 0.5, 1.8), ("tab:green", "tab:olive", "tab:purple")):
        q = theory.gaussian_pdf(x, th, s)
        js = theory.jsd(x, p, q)
        a0.plot(x, q, color=col, lw=1.8, label=f"$p_g$ = N({th}, 0.1$^2$): JSD = {js:.4f}")
        a0.fill_between(x, 0, np.minimum(p, q), color=col, alpha=0.3)
    a0.set_xlabel("x")
    a0.set_ylabel("density")
    a0.set_title("Narrow densities moved apart (shaded: overlap)")
    a0.legend(fontsize=8, loc="upper right")

    colors = dict(zip(SCALES, ("tab:blue", "tab:orange", "tab:red")))
    for s, c in cs.items():
        a1.plot(thetas, c[:, 0], color=colors[s], lw=2, label=f"s = {s}")
    a1.plot([0, 0], [0, np.log(2)], color="black", lw=1.5)
    a1.plot(thetas[thetas > 0], np.full((thetas > 0).sum(), np.log(2)), color="black", lw=1.5, ls="--",
            label="point masses (s -> 0): log 2 for any theta != 0")
    a1.axhline(np.log(2), color="grey", lw=0.6)
    a1.text(thetas[-1], np.log(2) + 0.01, "log 2", ha="right", va="bottom", fontsize=9)
    a1.set_xlabel("theta  (p_data = N(0, s$^2$), p_g = N(theta, s$^2$))")
    a1.set_ylabel("JSD(p_data || p_g)  (nats)")
    a1.set_title("JSD saturates at log 2 once the overlap is gone")
    a1.set_ylim(0, 0.78)
    a1.legend(fontsize=8, loc="lower right")

    for s, c in cs.items():
        g = np.abs(c[:, 1])
        ok = (g > 0) & (thetas > 0)         # at theta = 0 the gradient is 0 (rounding)
        a2.semilogy(thetas[ok], g[ok], color=colors[s], lw=2, label=f"s = {s}: quadrature")
        check = thetas[8::12]
        fd = np.abs([finite_difference(t, s) for t in check])
        big = fd > 1e-9                     # below that, differences of JSD are rounding noise
        a2.semilogy(check[big], fd[big], "o", mfc="none", color=colors[s], ms=6,
                    label=f"s = {s}: finite differences")
    a2.set_ylim(1e-24, 10)          # (s = 0.1 goes on down: 1e-87 at theta = 4)
    a2.set_xlabel("theta")
    a2.set_ylabel("|d JSD / d theta|  (log scale)")
    a2.set_title("... and its gradient vanishes")
    a2.legend(fontsize=7.5, loc="lower left", ncol=2)
    a2.grid(True, which="major", alpha=0.3)
    plots.save(fig, path)


def parse_args(argv=None):
    p = plots.parser(__doc__, os.path.join(HERE, "..", "docs", "figures"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    thetas = np.linspace(0, 4, 161)
    cs = curves(thetas)
    print(f"{'theta':>6s} " + " ".join(f"{'JSD s=' + str(s):>12s} {'dJSD s=' + str(s):>12s}" for s in SCALES))
    for i in range(0, len(thetas), 20):
        print(f"{thetas[i]:6.2f} " + " ".join(f"{cs[s][i, 0]:12.6f} {cs[s][i, 1]:12.3e}" for s in SCALES))
    print(f"log 2 = {np.log(2):.6f}")
    if not args.no_plot:
        path = os.path.join(args.out, "vanishing_jsd.png")
        draw(path, thetas, cs)
        print(f"wrote {path}")
    print(f"{time.time() - t0:.1f} s")
    return thetas, cs


if __name__ == "__main__":
    main(sys.argv[1:])
