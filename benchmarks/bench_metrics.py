"""Timing of the whole sample-quality metrics run (npgan.metrics + Parzen).

    python benchmarks/bench_metrics.py [-n 10000] [--train-split train|train_full] [--no-parzen]

Samples are stand-ins for a generator's: MNIST valid images, blurred, with
noise added (then clipped to [0, 1]). Stages timed: building the real
reference (classifier outputs of the 10,000 test images, their k-NN radii in
two layers, their nearest training image), evaluating the samples (classifier,
FD, score, precision/recall in two layers, nearest training image) and the
Parzen estimate (sigma on 1,000 valid images, then 10,000 test images). The
load average is printed: the machine may be shared, which inflates every
wall time; the peak RSS shows the blocked distance computations stay bounded.
"""
import argparse
import os
import platform
import resource
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from npgan import metrics  # noqa: E402
from npgan.metrics import parzen  # noqa: E402
from npgan.datasets import load_mnist  # noqa: E402

DATA = os.path.join(ROOT, "data")


def fake_samples(valid, n, seed=0):
    """n blurred, noisy valid images, float32 (n, 784) in [0, 1]."""
    rng = np.random.default_rng(seed)
    x = valid[rng.integers(0, len(valid), n)].reshape(n, 28, 28)
    x = (x + np.roll(x, 1, 1) + np.roll(x, -1, 1) + np.roll(x, 1, 2) + np.roll(x, -1, 2)) / 5
    x = x + rng.normal(0, 0.1, x.shape)
    return np.clip(x, 0, 1).astype(np.float32).reshape(n, 784)


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10000, help="number of samples")
    ap.add_argument("--train-split", default="train", choices=["train", "train_full"],
                    help="training images for the memorisation check (train: 50k, train_full: 60k)")
    ap.add_argument("--no-parzen", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    a = ap.parse_args(argv)
    say = None if a.quiet else (lambda m: print("   ", m, file=sys.stderr, flush=True))

    test_x, _ = load_mnist("test", data_dir=DATA)
    valid_x, _ = load_mnist("valid", data_dir=DATA)
    train_x, _ = load_mnist(a.train_split, data_dir=DATA)
    x = fake_samples(valid_x, a.n)
    load0 = os.getloadavg()[0]
    rows = []
    t = time.perf_counter()
    ref = metrics.RealReference(test_x, train_x, progress=say)
    rows.append(("real reference (10k test vs %dk train)" % (len(train_x) // 1000),
                 time.perf_counter() - t))
    t = time.perf_counter()
    r = metrics.evaluate(x, ref, progress=say)
    rows.append((f"evaluate {a.n} samples", time.perf_counter() - t))
    if not a.no_parzen:
        t = time.perf_counter()
        p = parzen.evaluate(x, test_x, valid_x, progress=not a.quiet)
        rows.append(("Parzen (10 sigmas x 1k valid, 10k test)", time.perf_counter() - t))
    total = sum(s for _, s in rows)
    print(f"npgan metrics benchmark: {a.n} samples, {len(test_x)} test, {len(train_x)} train; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load0:.1f} -> "
          f"{os.getloadavg()[0]:.1f}")
    for name, s in rows:
        print(f"  {name:45s} {s:7.1f} s")
    print(f"  {'total':45s} {total:7.1f} s   ({total / 60:.1f} min), peak RSS {peak_mib():.0f} MiB")
    print(f"  (sanity: FD {r['fd']:.2f}, score {r['score']:.2f}, precision {r['precision']:.3f}, "
          f"recall {r['recall']:.3f}" + ("" if a.no_parzen else f", Parzen {p['ll_mean']:.1f}") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
