"""Validation Parzen curves of several runs side by side: a markdown table and a figure.

    python examples/compare_curves.py \\
        "before (uniform z, D loss summed)=results/mnist/parzen_curve_paper.csv" \\
        "authors' recipe=results/mnist/faithful_run_metrics.jsonl" \\
        --every 10 --markdown results/mnist/fidelity_curves.md --png docs/figures/fidelity_curves.png

Each source is LABEL=PATH, where PATH is a run's ``metrics.jsonl`` (written by
``mnist_gan.py``: fields ``parzen_<generator>``) or a ``parzen_curve_*.csv``
(written by ``parzen_table.py``: generator, epoch, valid_ll, sigma). One row
per (source, generator), one column per epoch that is a multiple of --every.
"""
import argparse
import csv
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from npgan import files  # noqa: E402


def read_curves(path):
    """{generator: {epoch: validation LL}} from a metrics.jsonl or a parzen curve CSV."""
    curves = {}
    if path.endswith(".csv"):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                curves.setdefault(r["generator"], {})[int(r["epoch"])] = float(r["valid_ll"])
    else:
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    for k, v in r.items():
                        if k.startswith("parzen_"):
                            curves.setdefault(k[len("parzen_"):], {})[int(r["epoch"])] = float(v)
    if not curves:
        raise SystemExit(f"{path}: no validation Parzen values found")
    return curves


def table(sources, every, until=None):
    epochs = sorted({e for _, c in sources for g in c.values() for e in g
                     if e % every == 0 and (until is None or e <= until)})
    head = "| run | generator | " + " | ".join(str(e) for e in epochs) + " |\n"
    head += "|---|---|" + "---|" * len(epochs) + "\n"
    rows = []
    for label, curves in sources:
        for g, c in sorted(curves.items()):
            rows.append(f"| {label} | {g} | " + " | ".join(
                f"{c[e]:.1f}" if e in c else "" for e in epochs) + " |")
    return head + "\n".join(rows) + "\n"


def plot(sources, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no figure", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    styles = ["-", "--", ":", "-."]
    for i, (label, curves) in enumerate(sources):
        for j, (g, c) in enumerate(sorted(curves.items())):
            ep = sorted(c)
            ax.plot(ep, [c[e] for e in ep], styles[i % 4], color=f"C{j}", marker=".",
                    label=f"{label}: {g}")
    ax.axhline(225, color="gray", lw=0.8)
    ax.text(1, 227, "Table 1: 225 (test)", color="gray", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Parzen LL (nats)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.save_figure(fig, path, dpi=90)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="LABEL=PATH")
    p.add_argument("--every", type=int, default=10, help="table columns: epochs divisible by this")
    p.add_argument("--until", type=int, default=None, help="table columns: epochs up to this one")
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("--png", help="also draw the curves into this file")
    a = p.parse_args(argv)
    sources = []
    for s in a.sources:
        label, sep, path = s.rpartition("=")
        if not sep or not label:
            p.error(f"{s!r}: give LABEL=PATH")
        sources.append((label, read_curves(path)))
    t = table(sources, a.every, a.until)
    print(t)
    if a.markdown:
        files.write_text(a.markdown, t)
    if a.png:
        plot(sources, a.png)


if __name__ == "__main__":
    main()
