"""Section 3's remark: log(1 - D(G(z))) saturates early in training; -log D(G(z)) does not.

    python examples/saturation.py                       # ~15 s -> docs/figures/saturation.png

D outputs a logit l and D(G(z)) = sigmoid(l). The two losses G can descend, as
functions of l, and their derivatives (closed forms, see theory.g_loss_logit_grad):

    minimax (saturating):   log(1 - D) = -softplus(l)     d/dl = -D
    non-saturating:         -log D     =  softplus(-l)    d/dl = -(1 - D)

Early on D rejects G's samples confidently (D(G(z)) -> 0): the minimax
gradient is then ~D, i.e. it vanishes, while the non-saturating one is ~1.
Both losses have the same fixed point (the gradients have the same sign
everywhere) -- only the strength of the signal differs.

Top left: the closed forms, with npgan's autograd gradient d(loss)/d(logit)
at a few logits (squares) and the per-sample values measured on the first
iteration of the runs (dots). The other panels: the 1-D GAN of gaussian_gan.py
(``npgan.toys.gaussian_gan``), started with D trained alone first (2,000 steps,
so it rejects the samples of the untrained G with D(G(z)) ~ 0.006), then
Algorithm 1 with each loss, G's gradient measured at the start of each iteration.
G uses plain SGD with momentum here, so the size of its gradient is the size
of its step. Adam divides the gradient by its running RMS, which hides the
saturation: with --g-adam --steps 1000 (G's lr 5e-4) both losses bring p_g's
mean to 3.5 at about the same iteration (458 minimax, 476 non-saturating).
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
from npgan import plots, optim, theory, toys, functional as F  # noqa: E402

LOSSES = ("minimax", "nonsaturating")
LABELS = {"minimax": "minimax: log(1 - D(G(z)))", "nonsaturating": "non-saturating: -log D(G(z))"}
COLORS = {"minimax": "tab:red", "nonsaturating": "tab:blue"}


def g_loss(logits, loss):
    """G's loss (mean over the batch) from D's logits, as the trainer computes it."""
    if loss == "nonsaturating":
        return F.binary_cross_entropy_with_logits(logits, 1.0)       # -log D = softplus(-l)
    return -F.binary_cross_entropy_with_logits(logits, 0.0)          # log(1 - D) = -softplus(l)


def autograd_logit_grad(logits, loss):
    """d(loss)/d(logit) per element, from npgan's backward (float64)."""
    l = npgan.Tensor(np.asarray(logits, dtype=np.float64).reshape(-1, 1), requires_grad=True)
    g_loss(l, loss).backward()
    return l.grad.ravel() * l.shape[0]          # undo the mean: per-sample derivative


def run(loss, pretrain=2000, steps=300, seed=0, m=256, lr_g=0.01, momentum=0.5, g_adam=False):
    """Algorithm 1 from a confident D; records at the start of each iteration the
    mean D(G(z)), the mean |d loss / d x| over G's samples (what G's backward
    starts from), and p_g's mean. Also the first iteration's per-sample
    (D(G(z)), |d loss / d logit|)."""
    trainer = toys.gaussian_gan(seed=seed, batch_size=m, g_loss=loss)
    if not g_adam:
        trainer.opt_g = optim.SGD(trainer.G.parameters(), lr=lr_g, momentum=momentum)
    for _ in range(pretrain):
        trainer.step(d_only=True)           # D alone: it learns to reject G's samples
    rec = {"step": [], "d_fake": [], "grad_x": [], "mean": []}
    first = None
    for step in range(steps):
        # measure the gradient G receives, on a fresh batch, at the samples themselves
        z = trainer.sample_z(m, trainer.rng_z)
        with npgan.no_grad():
            x = trainer.G(z).data
        x_leaf = npgan.Tensor(x, requires_grad=True)
        logits = trainer.D(x_leaf)
        g_loss(logits, loss).backward()
        d = F.sigmoid(logits).numpy().ravel()
        if first is None:
            first = (d, np.abs(autograd_logit_grad(logits.numpy(), loss)))
        rec["step"].append(step)
        rec["d_fake"].append(float(d.mean()))
        rec["grad_x"].append(float(np.abs(x_leaf.grad).mean() * m))
        rec["mean"].append(float(x.mean()))
        trainer.step()                      # the iteration itself: a D step, then a G step
    rec["first"] = first
    return rec


def draw(runs, path):
    plt = plots.pyplot()

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    (a0, a1), (a2, a3) = axes
    d = np.logspace(-4, np.log10(0.9999), 400)
    logit = np.log(d) - np.log1p(-d)
    for loss in LOSSES:
        a0.loglog(d, np.abs(theory.g_loss_logit_grad(logit, loss)), color=COLORS[loss], lw=2,
                  label=f"{LABELS[loss]}:  |d/dl| = " + ("D" if loss == "minimax" else "1 - D"))
        lk = np.linspace(-8, 8, 9)
        a0.loglog(1 / (1 + np.exp(-lk)), np.abs(autograd_logit_grad(lk, loss)), "s", mfc="none",
                  color=COLORS[loss], ms=8, label=f"npgan autograd ({loss})")
        dd, gg = runs[loss]["first"]
        a0.loglog(dd, gg, "o", color="black", mfc=COLORS[loss], ms=4, alpha=0.6, zorder=5,
                  label="measured: samples of the first G step" if loss == "minimax" else None)
    a0.set_xlabel("D(G(z))")
    a0.set_ylabel("|d loss / d logit|")
    a0.set_title("G's gradient through D's logit: closed forms")
    a0.legend(fontsize=8, loc="lower center")
    a0.set_ylim(1e-4, 3)

    for loss in LOSSES:
        r = runs[loss]
        a1.plot(r["step"], r["mean"], color=COLORS[loss], lw=2, label=LABELS[loss])
        a2.semilogy(r["step"], r["d_fake"], color=COLORS[loss], lw=1.5, label=LABELS[loss])
        a3.semilogy(r["step"], r["grad_x"], color=COLORS[loss], lw=1.5, label=LABELS[loss])
    a1.axhline(toys.DATA_MEAN, color="black", ls=":", lw=1.5, label="data mean")
    a1.set_ylabel("mean of p_g")
    a1.set_title("G's progress from a confident D (1-D GAN, G on SGD)")
    a2.axhline(0.5, color="black", ls=":", lw=1, label="1/2")
    a2.set_ylabel("mean D(G(z))")
    a2.set_title("How confidently D rejects G's samples")
    a3.set_ylabel("mean |d loss / d G(z)| per sample")
    a3.set_title("The gradient G receives (at its samples)")
    for a in (a1, a2, a3):
        a.set_xlabel("training iteration (after D was trained alone)")
        a.legend(fontsize=8, loc="lower right")
    plots.save(fig, path)


def parse_args(argv=None):
    p = plots.parser(__doc__, os.path.join(HERE, "..", "docs", "figures"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrain", type=int, default=2000, help="D steps before G starts")
    p.add_argument("--steps", type=int, default=300, help="training iterations with each loss")
    p.add_argument("--g-adam", action="store_true", help="G uses Adam (as gaussian_gan.py) instead of SGD")
    return p.parse_args(argv)


def steps_to_reach(rec, target=3.5):
    """First iteration at which p_g's mean reached ``target`` (None if never)."""
    for s, mu in zip(rec["step"], rec["mean"]):
        if mu >= target:
            return s
    return None


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    runs = {loss: run(loss, args.pretrain, args.steps, args.seed, g_adam=args.g_adam) for loss in LOSSES}
    for loss in LOSSES:
        r = runs[loss]
        print(f"{loss:14s} first step: mean D(G(z)) {r['d_fake'][0]:.4f}, mean |d loss/d G(z)| "
              f"{r['grad_x'][0]:.3g}; p_g mean reaches 3.5 at iteration {steps_to_reach(r)}")
    ratio = runs["nonsaturating"]["grad_x"][0] / runs["minimax"]["grad_x"][0]
    print(f"at the start the non-saturating loss gives G a {ratio:.0f}x larger gradient")
    if not args.no_plot:
        path = os.path.join(args.out, "saturation.png")
        draw(runs, path)
        print(f"wrote {path}")
    print(f"{time.time() - t0:.1f} s")
    return runs


if __name__ == "__main__":
    main(sys.argv[1:])
