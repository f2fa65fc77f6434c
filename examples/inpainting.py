"""Inpainting: sampling p(x_S | x_not S) with a trained MNIST G (paper Section 7, item 3).

    python examples/inpainting.py --generator /work/runs/faithful/checkpoint_epoch300.npz \
        --which ema0.9999 --encoder /work/runs/inf18/encoder.npz

Algorithm (npgan.inference.fit_z), for each test digit x whose top half (rows
0-13, the set not-S) is known and bottom half (S) is not:

    z0 = E(x with its bottom half replaced by the mean training bottom half)
         (E: the encoder of examples/inference.py; without one, z0 ~ N(0, I))
    z* = argmin_z  mean over the top half (G(z) - x)^2 + lambda mean z^2   (Adam on z, G frozen)
    completion = [x's top half | G(z*)'s bottom half]

Baselines: the mean training bottom half; the bottom half of the training
image whose top half is nearest (pixel space, 50,000 images). Measured on
the first N test digits: accuracy of the reference classifier (npgan.classifier)
on each completion against the true label, and the bottom half's pixel MSE.
Results: results/future_work/inpainting.json; figure (rows: x, top half given,
GAN completion, nearest-top-half completion): docs/figures/future_inpainting.png.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
from npgan import checkpoint, classifier, datasets, files, images, inference, metrics, sampling  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DATA = os.path.join(ROOT, "data", "mnist")
TOP = 14 * 28          # pixels of rows 0-13: the known half


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", required=True)
    p.add_argument("--which", default="G")
    p.add_argument("--encoder", default=None, help="encoder.npz of examples/inference.py (z0 = E(x)); else z0 random")
    p.add_argument("--n", type=int, default=300, help="test digits completed")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--prior-weight", type=float, default=0.01, help="lambda: keeps z where the prior has mass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default=os.path.join(ROOT, "results", "future_work", "inpainting.json"))
    p.add_argument("--figure", default=os.path.join(ROOT, "docs", "figures", "future_inpainting.png"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    G = sampling.load_generator(args.generator, which=args.which)
    train_x, _ = datasets.load_mnist("train", fallback=DEFAULT_DATA)
    test_x, test_y = datasets.load_mnist("test", fallback=DEFAULT_DATA)
    x, y = test_x[:args.n], test_y[:args.n]
    model = classifier.load_classifier()
    mean_bottom = train_x[:, TOP:].mean(0)
    mask = np.zeros(784, np.float32)
    mask[:TOP] = 1
    print(f"npgan {npgan.__version__}; completing the bottom half of {len(x)} test digits", flush=True)

    def with_bottom(bottom):
        return np.concatenate([x[:, :TOP], bottom], axis=1)

    # z0: the encoder's guess from the top half (bottom: the mean), else the prior
    filled = with_bottom(np.broadcast_to(mean_bottom, (len(x), 784 - TOP)))
    if args.encoder:
        E = inference.Encoder()
        E.load_state_dict(checkpoint.load(args.encoder)["state"]["E"])
        z0 = inference.encode(E, filled)
    else:
        z0 = np.random.default_rng(args.seed).standard_normal((len(x), G.z_dim)).astype(np.float32)
    every = max(args.steps // 10, 1)
    z, losses = inference.fit_z(G, x, mask, z0, steps=args.steps, lr=args.lr, prior_weight=args.prior_weight,
                                on_step=lambda t, l: t % every == 0 and print(f"  step {t}/{args.steps}  "
                                                                             f"loss {l:.4f}", flush=True))
    gz = inference.decode(G, z)
    completions = {"gan": with_bottom(gz[:, TOP:]),
                   "gan_from_z0": with_bottom(inference.decode(G, z0)[:, TOP:]),
                   "mean_bottom": filled,
                   "nearest_top_half": with_bottom(train_x[metrics.nearest_indices(x[:, :TOP], train_x[:, :TOP]), TOP:]),
                   "original": x}
    res = {"command": "python examples/inpainting.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "n": len(x), "z0": "encoder" if args.encoder else "prior", "fit_loss_first_last": [losses[0], losses[-1]]}
    for name, c in completions.items():
        pred = classifier.classify(model, c).log_probs.argmax(1)
        res[name] = {"acc_vs_label": float((pred == y).mean()),
                     "bottom_pixel_mse": float(np.mean((c[:, TOP:] - x[:, TOP:]) ** 2))}
        print(f"{name:17s} classifier = true label {res[name]['acc_vs_label']:.4f}  bottom-half pixel MSE "
              f"{res[name]['bottom_pixel_mse']:.4f}")
    res["seconds"] = time.time() - t0
    cols = min(12, len(x))
    given = with_bottom(np.full((len(x), 784 - TOP), 0.5, np.float32))
    images.save_grid(np.concatenate([x[:cols], given[:cols], completions["gan"][:cols],
                                     completions["nearest_top_half"][:cols]]), args.figure, 4, cols)
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    files.write_text(args.results, json.dumps(res, indent=1) + "\n")
    print(f"results -> {args.results}, figure -> {args.figure}")
    return res


if __name__ == "__main__":
    main()
