"""The GEMMs of one paper training step, alone: npgan's layers.gemm / gemm2
with SciPy's BLAS and with MKL, NumPy's matmul, and torch.mm, measured in one run.

The shapes are those of GANTrainer.step (simultaneous update, batch 100),
in the order and pairing the step uses them: the forward products, D's and G's
backward products (gemm2 pairs for a layer's g W^T and x^T g), about 2.8 GFLOP.
It shows how much of a step the BLAS alone takes, and how fast each library
runs these 100-row shapes on this machine. Each implementation runs in its own
process, in turns (rounds rotate the order); ratios are taken between medians.

    python benchmarks/bench_gemm.py [--reps 100] [--rounds 4]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (m, k, n, a layout, b layout, paired with the next): row-major C (m, n) = A (m, k) B (k, n)
STEP = (
    [(100, 100, 1200, "C", "C", 0), (100, 1200, 1200, "C", "C", 0), (100, 1200, 784, "C", "C", 0)]
    + [(100, 784, 1200, "C", "C", 0), (100, 240, 1200, "C", "C", 0), (100, 240, 1, "C", "C", 0)] * 2
    + [(100, 1, 240, "C", "C", 1), (240, 100, 1, "F", "C", 0),
       (100, 1200, 240, "C", "F", 1), (240, 100, 1200, "F", "C", 0),
       (784, 100, 1200, "F", "C", 0)] * 2
    + [(100, 1, 240, "C", "C", 0), (100, 1200, 240, "C", "F", 0), (100, 1200, 784, "C", "F", 0),
       (100, 784, 1200, "C", "F", 1), (1200, 100, 784, "F", "C", 0),
       (100, 1200, 1200, "C", "F", 1), (1200, 100, 1200, "F", "C", 0),
       (100, 100, 1200, "F", "C", 0)])
GFLOP = sum(2 * m * k * n for m, k, n, *_ in STEP) / 1e9
IMPLS = ("npgan", "npgan-scipy", "npgan-mkl", "numpy", "torch")


def operands(seed=0):
    rng = numpy.random.default_rng(seed)
    out = []
    for m, k, n, la, lb, pair in STEP:
        a = rng.random((m, k), dtype=numpy.float32)
        b = rng.random((k, n), dtype=numpy.float32)
        out.append((numpy.asfortranarray(a) if la == "F" else a,
                    numpy.asfortranarray(b) if lb == "F" else b,
                    numpy.empty((m, n), numpy.float32), pair))
    return out


def build(impl, threads):
    """-> (run_all(), description)."""
    ops = operands()
    if impl.startswith("npgan"):
        from npgan import _kernels
        k = _kernels.load("gemm")
        if k is None:
            raise RuntimeError("npgan's gemm kernel is not built")

        def run():
            i = 0
            while i < len(ops):
                a, b, c, pair = ops[i]
                if pair:
                    a1, b1, c1, _ = ops[i + 1]
                    k.gemm2(a, b, c, a1, b1, c1)
                    i += 2
                else:
                    k.gemm(a, b, c)
                    i += 1
        return run, (f"gemm.gemm/gemm2, BLAS {_kernels.blas()}, "
                     f"{_kernels.load('pool').split_threads()} threads")
    if impl == "numpy":
        def run():
            for a, b, c, _ in ops:
                numpy.matmul(a, b, out=c)
        return run, f"numpy {numpy.__version__} matmul"
    import torch
    torch.set_num_threads(threads)
    tops = [(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)) for a, b, c, _ in ops]

    def run():
        for a, b, c in tops:
            torch.mm(a, b, out=c)
    return run, f"torch {torch.__version__} mm, {torch.get_num_threads()} threads"


def worker(impl, threads):
    run, desc = build(impl, threads)
    for _ in range(5):
        run()
    print(json.dumps({"ready": desc}), flush=True)
    for line in sys.stdin:
        n, times = int(line), []
        for _ in range(n):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        print(json.dumps(times), flush=True)


def available(impl):
    if impl == "torch":
        import importlib.util
        return None if importlib.util.find_spec("torch") else "torch is not installed"
    if impl == "npgan-mkl":
        sys.path.insert(0, ROOT)
        from npgan._kernels.blas_lib import find_mkl
        return None if find_mkl() else 'MKL not installed: pip install "npgan[mkl]"'
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=100, help="repetitions of the step's GEMMs per row")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    threads = a.threads or os.cpu_count() or 1
    if a.worker:
        return worker(a.worker, threads)
    procs, notes = {}, []
    for impl in a.impls.split(","):
        why = available(impl)
        if why:
            notes.append(f"{impl}: skipped ({why})")
            continue
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads),
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env["NPGAN_BLAS"] = {"npgan-mkl": "mkl", "npgan-scipy": "scipy"}.get(impl, "")
        pr = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", impl,
                               "--threads", str(threads)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
        procs[impl] = (pr, json.loads(pr.stdout.readline())["ready"])
    times = {k: [] for k in procs}
    names = list(procs)
    per = max(1, a.reps // a.rounds)
    for r in range(a.rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(0.15)
            pr = procs[k][0]
            pr.stdin.write(f"{per}\n")
            pr.stdin.flush()
            times[k] += json.loads(pr.stdout.readline())
    for pr, _ in procs.values():
        pr.stdin.close()
        pr.wait()
    base = numpy.median(times["torch"]) if "torch" in times else None
    print(f"The {len(STEP)} GEMMs of one training step ({GFLOP:.2f} GFLOP), {threads} threads\n")
    print("| implementation | n | median ms | GFLOP/s | x torch |")
    print("|---|---|---|---|---|")
    for k, v in times.items():
        med = numpy.median(v)
        ratio = f"{med / base:.2f}" if base else "-"
        print(f"| {k} | {len(v)} | {med * 1e3:.2f} | {GFLOP / med:.0f} | {ratio} |")
    print()
    for k, (_, desc) in procs.items():
        print(f"{k}: {desc}")
    for n in notes:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
