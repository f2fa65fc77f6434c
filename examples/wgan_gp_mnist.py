"""WGAN-GP (Gulrajani et al., 2017) on MNIST with the paper's G and a maxout critic.

    python examples/wgan_gp_mnist.py --out /work/runs/wgan_gp --minutes 60
    python examples/wgan_gp_mnist.py --out /work/runs/wgan_gp --minutes 60    # continues the run
    python examples/evaluate_samples.py --checkpoint /work/runs/wgan_gp/checkpoint.npz

G: the paper's MNIST generator (npgan.models.Generator: z ~ N(0, I) in R^100 ->
1200 ReLU -> 1200 ReLU -> 784 sigmoid, output bias at the pixel means' logits).
Critic: the paper's D (maxout 240x5 -> maxout 240x5 -> 1 linear unit) without
dropout and without any sigmoid: its output is a real number.
The algorithm box of the WGAN-GP paper, with its defaults (lambda 10, n_critic 5,
Adam lr 1e-4, betas (0, 0.9), m = 64):

    while G steps < --steps and minutes < --minutes:
        5 times:  x ~ train[:50000], z ~ N(0, I), eps ~ U[0, 1]
                  x_hat = eps x + (1 - eps) G(z)
                  critic: descend  E D(G(z)) - E D(x) + 10 E (||grad D(x_hat)||_2 - 1)^2
        z ~ N(0, I);  G: descend  -E D(G(z))

Writes --out/checkpoint.npz (a trainer checkpoint: evaluate_samples.py reads its
G; running again with the same --out continues from it) every --save-minutes and
at the end, --out/log.jsonl (losses every --log-every G steps) and
--out/samples.png (100 samples).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
from npgan import checkpoint, datasets, images, models, optim, sampling  # noqa: E402
from npgan.variants import WassersteinTrainer  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


def load_train(data_dir, n):
    if data_dir is None and not os.environ.get("NPGAN_DATA"):
        try:
            datasets.find_data_dir("mnist", download=False)
        except datasets.DatasetError:
            data_dir = DEFAULT_DATA
    return datasets.load_mnist("train", data_dir=data_dir)[0][:n]


def build(train_x, seed=0, lr=1e-4, betas=(0.0, 0.9), n_critic=5, gp_weight=10.0, batch=64,
          hidden=1200, units=240):
    rng = np.random.default_rng(seed)
    G = models.Generator(hidden=hidden, output_bias=models.pixel_logits(train_x), rng=rng)
    D = models.Discriminator(units=units, p_input=0.0, p_hidden=0.0, rng=rng)   # critic: no dropout
    data = lambda m, r: train_x[r.integers(0, len(train_x), m)]       # noqa: E731
    return WassersteinTrainer(G, D, data, models.z_sampler("gaussian"),
                              optim.Adam(G.parameters(), lr, betas), optim.Adam(D.parameters(), lr, betas),
                              n_critic=n_critic, gp_weight=gp_weight, batch_size=batch, generator=rng)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="run directory (never inside the repository)")
    ap.add_argument("--steps", type=int, default=100_000, help="stop after this many G steps")
    ap.add_argument("--minutes", type=float, default=60.0, help="stop after this much wall time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--train-size", type=int, default=50000)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--save-minutes", type=float, default=5.0)
    ap.add_argument("--blas-threads", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=1200, help="G's hidden width (the paper's: 1200)")
    ap.add_argument("--units", type=int, default=240, help="critic's maxout units (the paper's: 240)")
    a = ap.parse_args(argv)
    npgan.settings.configure(blas_threads=a.blas_threads)
    train_x = load_train(a.data_dir, a.train_size)
    tr = build(train_x, a.seed, lr=a.lr, batch=a.batch, hidden=a.hidden, units=a.units)
    config = {"method": "wgan-gp", "seed": a.seed, "batch": a.batch, "lr": a.lr, "betas": [0.0, 0.9],
              "n_critic": 5, "gp_weight": 10.0, "critic": "maxout 240x5 x2, no dropout, no sigmoid",
              "z": "gaussian", "train_size": a.train_size}
    if (a.hidden, a.units) != (1200, 240):           # the paper's widths go unsaid
        config.update(hidden=a.hidden, units=a.units)
    os.makedirs(a.out, exist_ok=True)
    ck = os.path.join(a.out, "checkpoint.npz")
    seconds = 0.0
    if os.path.exists(ck):
        saved = checkpoint.load(ck, config=config)
        tr.load_state_dict(saved["state"])
        seconds = saved["state"]["train_seconds"]
        print(f"continuing from G step {tr.g_steps} ({seconds / 60:.1f} min of training)", flush=True)

    def save():
        checkpoint.save(ck, {**tr.state_dict(), "train_seconds": seconds}, config)

    t_start = time.time()
    t_save = t_start
    sums, n = {}, 0
    with open(os.path.join(a.out, "log.jsonl"), "a") as log:
        while tr.g_steps < a.steps and time.time() - t_start < a.minutes * 60:
            t0 = time.perf_counter()
            stats = tr.step()
            seconds += time.perf_counter() - t0
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            if tr.g_steps % a.log_every == 0:
                rec = {"g_step": tr.g_steps, "critic_batches": tr.g_steps * tr.n_critic,
                       "epochs": tr.g_steps * tr.n_critic * a.batch / len(train_x),
                       "train_seconds": round(seconds, 1), **{k: v / n for k, v in sums.items()}}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(f"G step {tr.g_steps:6d} ({rec['epochs']:.2f} epochs of critic batches, "
                      f"{seconds / 60:.1f} min): W loss {rec['critic_loss']:+.3f}, GP {rec['gp']:.3f}, "
                      f"G loss {rec['g_loss']:+.3f}", flush=True)
                sums, n = {}, 0
            if time.time() - t_save > a.save_minutes * 60:
                save()
                t_save = time.time()
    save()
    s = sampling.sample(tr.G.eval(), 100, rng=12345)
    images.save_grid(s, os.path.join(a.out, "samples.png"), rows=10)
    print(f"stopped at G step {tr.g_steps} after {seconds / 60:.1f} min of training; wrote {ck}")
    return tr


if __name__ == "__main__":
    main()
