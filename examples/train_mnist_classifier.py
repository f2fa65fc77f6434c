"""Train the reference MNIST classifier used by npgan.metrics.

    python examples/train_mnist_classifier.py            # writes npgan/data/mnist_classifier.npz

MLP 784-600-600-10 (ReLU, dropout .1 on the input and .3 on the hidden
layers), Adam with a cosine-decayed learning rate, on all 60,000 MNIST
training images randomly shifted by up to 2 pixels, fixed seed. Test
accuracy is printed after every epoch but never used to choose anything: the
last epoch's weights are saved. The md5, the command, the seed and the
accuracy go to ``<out>.txt`` beside the weights; copy the md5 into
``npgan.classifier.WEIGHTS_MD5`` when you replace the shipped file.
"""
import argparse
import math
import os
import platform
import sys
import time

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from npgan import backend, files, optim, settings, functional as F  # noqa: E402
if __name__ == "__main__":   # these GEMMs are small: one BLAS thread is as fast on a busy
    settings.configure(blas_threads=1)    # 2-core machine, and results do not depend on it
from npgan.classifier import MNISTClassifier, WEIGHTS_PATH, classify, save_weights  # noqa: E402
from npgan.datasets import load_mnist  # noqa: E402
from npgan.tensor import Tensor  # noqa: E402

REPO_DATA = os.path.join(os.path.dirname(HERE), "data")


def shift(images, max_shift, rng):
    """Each image (B, 784) moved by its own random (dy, dx) in
    [-max_shift, max_shift]^2 pixels, zero-filled -> (B, 784)."""
    b, s = len(images), max_shift
    padded = np.pad(images.reshape(b, 28, 28), ((0, 0), (s, s), (s, s)))
    oy, ox = rng.integers(0, 2 * s + 1, (2, b))
    rows = (oy[:, None] + np.arange(28))[:, :, None]
    cols = (ox[:, None] + np.arange(28))[:, None, :]
    return padded[np.arange(b)[:, None, None], rows, cols].reshape(b, 784)


def accuracy(model, x, y):
    return float((classify(model, x).log_probs.argmax(1) == y).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam's initial learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p-input", type=float, default=0.1, help="dropout probability of the input")
    ap.add_argument("--p-hidden", type=float, default=0.3, help="dropout probability of the hidden layers")
    ap.add_argument("--shift", type=int, default=2,
                    help="random translations of up to this many pixels (0: none)")
    ap.add_argument("--out", default=WEIGHTS_PATH)
    ap.add_argument("--data-dir", default=REPO_DATA if os.path.isdir(REPO_DATA) else None)
    args = ap.parse_args(argv)

    x, y = load_mnist("train_full", data_dir=args.data_dir)
    xt, yt = load_mnist("test", data_dir=args.data_dir)
    rng = np.random.default_rng(args.seed)
    model = MNISTClassifier(p_input=args.p_input, p_hidden=args.p_hidden, rng=rng)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    n, bs = len(x), args.batch_size
    steps_per_epoch = math.ceil(n / bs)
    total = args.epochs * steps_per_epoch
    print(f"classifier {model.sizes}, {model.num_parameters():,} parameters, "
          f"{args.epochs} epochs x {steps_per_epoch} steps, seed {args.seed}", flush=True)
    t0 = time.time()
    step = 0
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(n)
        loss_sum = 0.0
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            opt.lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            xb = shift(x[idx], args.shift, rng) if args.shift else x[idx]
            loss = F.cross_entropy(model(Tensor(backend.asarray(xb))), backend.asarray(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            step += 1
        acc = accuracy(model, xt, yt)
        print(f"epoch {epoch + 1:3d}  train loss {loss_sum / n:.4f}  test acc {acc:.4%}  "
              f"{time.time() - t0:6.0f} s", flush=True)
    minutes = (time.time() - t0) / 60
    acc = accuracy(model, xt, yt)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    md5 = save_weights(model.eval(), args.out)
    size = os.path.getsize(args.out)
    cmd = "python examples/train_mnist_classifier.py " + " ".join(argv if argv is not None else sys.argv[1:])
    note = (f"npgan reference MNIST classifier ({os.path.basename(args.out)})\n"
            f"command:   {cmd.strip()}\n"
            f"seed:      {args.seed}\n"
            f"arch:      {'-'.join(map(str, model.sizes))} ReLU MLP, dropout {args.p_input} input / "
            f"{args.p_hidden} hidden, "
            f"features = 2nd hidden layer (eval mode)\n"
            f"training:  MNIST train_full (60,000 images), {args.epochs} epochs, batch {bs}, "
            f"Adam lr {args.lr} cosine-decayed to 0, random shifts of up to {args.shift} px\n"
            f"test acc:  {acc:.4%} (10,000 MNIST test images)\n"
            f"file:      {size:,} bytes, md5 {md5}\n"
            f"trained:   {minutes:.1f} min, numpy {np.__version__}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, {settings.get('blas_threads')} BLAS thread(s)\n")
    files.write_text(os.path.splitext(args.out)[0] + ".txt", note)
    print(note, end="")


if __name__ == "__main__":
    main()
