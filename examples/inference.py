"""Learned approximate inference for a trained MNIST G (paper Section 7, item 2).

    python examples/inference.py --generator /work/runs/faithful/checkpoint_epoch300.npz \
        --which ema0.9999 --out /work/runs/inf18                    # train E (resumable), evaluate

Algorithm (npgan.inference), the authors' "inferer":

    G: a trained generator, frozen; E: 784 -> 1200 ReLU -> 1200 ReLU -> 100 (G reversed)
    for step = 1 .. S:                        (Adam lr 1e-3, x0.1 for the last 20 %)
        z ~ N(0, I) (100 per minibatch);  x = G(z)
        descend grad_E  mean (E(x) - z)^2     (E never sees a real image)
    inference for a real image x:  z_hat = E(x);  reconstruction G(z_hat)
    refinement (optional, a subset): z* = argmin_z mean (G(z) - x)^2 by Adam from z_hat

Evaluation on the first N test images (default 2,000): pixel MSE of G(E(x))
against x, and agreement of the reference classifier (npgan.classifier) on
G(E(x)) with x's true label and with its own label for x; the same for the
nearest training image in pixel space (of the 50,000 G was trained on), the
baseline. Also how well E inverts G on G's own samples (z error, pixel error).
Results: results/future_work/inference.json; figure (rows: x, G(E(x)), G(z*),
nearest training image): docs/figures/future_inference.png.
"""
import argparse
import json
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
from npgan import checkpoint, classifier, datasets, files, images, inference, metrics, models, optim, sampling  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DATA = os.path.join(ROOT, "data", "mnist")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", required=True, help="a trainer checkpoint or a Generator state_dict (.npz)")
    p.add_argument("--which", default="G", help='"G" or, from a checkpoint, "ema<decay>"')
    p.add_argument("--steps", type=int, default=5000, help="encoder minibatches (100 samples of G each)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-test", type=int, default=2000, help="test images evaluated")
    p.add_argument("--refine-n", type=int, default=300, help="test images also refined by descent on z")
    p.add_argument("--refine-steps", type=int, default=100)
    p.add_argument("--out", default="runs/inference")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--results", default=os.path.join(ROOT, "results", "future_work", "inference.json"))
    p.add_argument("--figure", default=os.path.join(ROOT, "docs", "figures", "future_inference.png"))
    return p.parse_args(argv)


def lr_schedule(args):
    return lambda t: args.lr if t < 0.8 * args.steps else args.lr * 0.1


def train(args, G):
    """E trained to invert G; checkpointed every ``checkpoint_every`` steps (resumable)."""
    E = inference.Encoder(rng=np.random.default_rng(args.seed))
    opt = optim.Adam(E.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed + 1)
    cfg = {k: getattr(args, k) for k in ("generator", "which", "steps", "lr", "seed")}
    ck = os.path.join(args.out, "encoder.npz")
    state = {"step": 0, "losses": []}
    if args.resume and os.path.exists(ck):
        s = checkpoint.load(ck, config=cfg)["state"]
        E.load_state_dict(s["E"])
        opt.load_state_dict(s["opt"])
        rng.bit_generator.state = s["rng"]
        state = {"step": int(s["step"]), "losses": list(s["losses"])}
        print(f"resumed the encoder at step {state['step']}")
    elif os.path.exists(ck):
        sys.exit(f"{ck} exists: pass --resume, or choose another --out")
    stop = {"flag": False}
    old = {s: signal.signal(s, lambda *a: stop.update(flag=True)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _train(args, G, E, opt, rng, cfg, ck, state, stop)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _train(args, G, E, opt, rng, cfg, ck, state, stop):
    t0 = time.time()

    def save():
        checkpoint.save(ck, {"E": E.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                             "step": state["step"], "losses": state["losses"]}, cfg)

    while state["step"] < args.steps and not stop["flag"]:
        n = min(args.checkpoint_every, args.steps - state["step"])
        losses = inference.train_encoder(E, G, n, opt=opt, rng=rng, lr_schedule=lr_schedule(args),
                                         start=state["step"])
        state["step"] += n
        state["losses"] += losses
        save()
        print(f"step {state['step']:5d}/{args.steps}  MSE(E(G(z)), z) {np.mean(losses[-100:]):.4f}  "
              f"({time.time() - t0:.0f} s)", flush=True)
    return E, state, time.time() - t0, state["step"] >= args.steps


def agreement(model, recon, labels, pred_x):
    p = classifier.classify(model, recon).log_probs.argmax(1)
    return {"acc_vs_label": float((p == labels).mean()), "agree_with_classifier_on_x": float((p == pred_x).mean())}


def main(argv=None):
    args = parse_args(argv)
    G = sampling.load_generator(args.generator, which=args.which)
    print(f"npgan {npgan.__version__}; G {args.which} from {args.generator} (z prior {G.z_prior})")
    with files.lock_dir(args.out):
        E, state, seconds, done = train(args, G)
    if not done:
        print("stopped: continue with --resume")
        return None

    t0 = time.time()
    model = classifier.load_classifier()
    test_x, test_y = datasets.load_mnist("test", fallback=DEFAULT_DATA)
    train_x, train_y = datasets.load_mnist("train", fallback=DEFAULT_DATA)
    x, y = test_x[:args.n_test], test_y[:args.n_test]
    pred_x = classifier.classify(model, x).log_probs.argmax(1)
    res = {"command": "python examples/inference.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "generator": {"path": args.generator, "which": args.which, "sha256": files.sha256(args.generator)},
           "encoder_steps": state["step"], "encoder_train_seconds": seconds,
           "encoder_final_mse": float(np.mean(state["losses"][-100:])), "n_test": len(x),
           "classifier_on_x_acc": float((pred_x == y).mean())}

    # 1. E inverts G on G's own (held-out) samples
    zs = models.sample_z(1000, np.random.default_rng(777), prior=G.z_prior)
    gx = inference.decode(G, np.asarray(zs))
    z_hat = inference.encode(E, gx)
    res["on_G_samples"] = {"z_mse": float(np.mean((z_hat - np.asarray(zs)) ** 2)),
                           "pixel_mse": float(np.mean((inference.decode(G, z_hat) - gx) ** 2))}
    print(f"on G's samples: z MSE {res['on_G_samples']['z_mse']:.4f} (prior variance 1), pixel MSE "
          f"{res['on_G_samples']['pixel_mse']:.4f}", flush=True)

    # 2. test images: G(E(x)) against the nearest training image
    rec = inference.reconstruct(G, E, x)
    print(f"nearest training images of {len(x)} test images ...", flush=True)
    nn_idx = metrics.nearest_indices(x, train_x)
    nn = train_x[nn_idx]
    res["G(E(x))"] = {"pixel_mse": float(np.mean((rec - x) ** 2)), **agreement(model, rec, y, pred_x)}
    res["nearest_train"] = {"pixel_mse": float(np.mean((nn - x) ** 2)), **agreement(model, nn, y, pred_x),
                            "train_label_acc": float((train_y[nn_idx] == y).mean())}
    # 3. refinement by descent on z from E(x), on a subset (costly: G forward + backward per step)
    k = min(args.refine_n, len(x))
    res["refine_n"], res["refine_steps"] = k, args.refine_steps
    if k:
        z0 = inference.encode(E, x[:k])
        zr, losses = inference.fit_z(G, x[:k], np.ones(784, np.float32), z0, steps=args.refine_steps)
        ref = inference.decode(G, zr)
        sub = lambda a: a[:k]  # noqa: E731
        res["subset"] = {
            "G(E(x))": {"pixel_mse": float(np.mean((rec[:k] - x[:k]) ** 2)),
                        **agreement(model, rec[:k], sub(y), sub(pred_x))},
            "G(z*) refined": {"pixel_mse": float(np.mean((ref - x[:k]) ** 2)),
                              **agreement(model, ref, sub(y), sub(pred_x)),
                              "loss_first_last": [losses[0], losses[-1]]},
            "nearest_train": {"pixel_mse": float(np.mean((nn[:k] - x[:k]) ** 2)),
                              **agreement(model, nn[:k], sub(y), sub(pred_x))}}
    else:
        ref = rec
    res["eval_seconds"] = time.time() - t0
    for name in ("G(E(x))", "nearest_train"):
        r = res[name]
        print(f"{name:14s} pixel MSE {r['pixel_mse']:.4f}  classifier = true label {r['acc_vs_label']:.4f}  "
              f"= classifier on x {r['agree_with_classifier_on_x']:.4f}")
    if k:
        for name, r in res["subset"].items():
            print(f"  first {k}: {name:14s} pixel MSE {r['pixel_mse']:.4f}  = label {r['acc_vs_label']:.4f}")
    cols = min(12, len(ref))
    images.save_grid(np.concatenate([x[:cols], rec[:cols], ref[:cols], nn[:cols]]), args.figure, 4, cols)
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    files.write_text(args.results, json.dumps(res, indent=1) + "\n")
    print(f"results -> {args.results}, figure -> {args.figure} (rows: x, G(E(x)), G(z*), nearest training image)")
    return res


if __name__ == "__main__":
    main()
