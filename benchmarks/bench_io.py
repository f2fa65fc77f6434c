"""Wall times and memory that the tests used to assert (a test must not fail
because the machine is loaded): printed here instead.

    python benchmarks/bench_io.py [--data-dir DIR] [--threads 300]

* loading all 60,000 MNIST training images (gzip, md5-checked, /255);
* a download from an unreachable mirror failing (DOWNLOAD_TIMEOUT per try);
* RSS growth over short-lived threads that each run npgan's own sgemm once
  (each thread's 236 KB packing buffer must be freed when it exits: 300
  threads keeping theirs would hold ~70 MB); skipped without AVX-512.
The load average is printed: on a shared machine every wall time inflates.
"""
import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from npgan import _kernels as K  # noqa: E402
from npgan import datasets as D  # noqa: E402


def rss_mib():
    """Resident set size now (Linux /proc), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return None


def bench_load(data_dir, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        x, _ = D.load_mnist("train_full", data_dir=data_dir)
        times.append(time.perf_counter() - t)
    print(f"load_mnist('train_full'): {min(times):.2f} s best of {repeats} "
          f"({x.shape[0]} images, md5 checked)")


def bench_failed_download():
    saved = D.MIRRORS
    with tempfile.TemporaryDirectory() as cache:
        old = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = cache
        D.MIRRORS = {"mnist": ["http://127.0.0.1:9/"], "fashion-mnist": []}
        t = time.perf_counter()
        try:
            D.find_data_dir("mnist", download=True)
        except D.DatasetError:
            pass
        finally:
            D.MIRRORS = saved
            if old is None:
                del os.environ["XDG_CACHE_HOME"]
            else:
                os.environ["XDG_CACHE_HOME"] = old
    print(f"download from an unreachable mirror failed after {time.perf_counter() - t:.2f} s "
          f"(DOWNLOAD_TIMEOUT {D.DOWNLOAD_TIMEOUT} s per try)")


def bench_thread_buffers(n_threads):
    layers = K.load("gemm")
    if layers is None or not layers.own_sgemm_supported() or rss_mib() is None:
        print("thread buffers: skipped (no compiled layers, no AVX-512 or no /proc)")
        return
    prev = K.use_blas("npgan")
    try:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((200, 256)).astype(np.float32)   # fills one whole buffer
        b = rng.standard_normal((256, 40)).astype(np.float32)

        def work():
            layers.gemm(a, b, np.empty((200, 40), np.float32))
        for batch in ("warm-up", "measured"):      # the first batch warms the allocator up
            before = rss_mib()
            for _ in range(n_threads):
                t = threading.Thread(target=work)
                t.start()
                t.join()
            grown = rss_mib() - before
        print(f"RSS grew {grown:.1f} MiB over {n_threads} short-lived sgemm threads "
              f"(kept buffers would be ~{n_threads * 236 / 1024:.0f} MiB)")
    finally:
        K.use_blas(prev)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "data"))
    ap.add_argument("--threads", type=int, default=300)
    args = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    bench_load(args.data_dir)
    bench_failed_download()
    bench_thread_buffers(args.threads)


if __name__ == "__main__":
    main()
