"""Table 1 and the metrics table, generated from the result rows in results/mnist/*.json.

    python examples/results_table.py results/mnist/rows_*.json --readme README.md \\
        --metrics results/mnist/metrics.md

Each JSON file is a list of rows as ``evaluate_samples.py --json`` writes them
(source, parzen {ll_mean, ll_se, sigma}, fd, precision, recall, score,
classes_covered, and for snapshots of a run: generator, epoch, train_seconds,
run_config, command); a row may add "label" (the name shown in the tables).
The tables replace what stands between the markers ``<!-- results:table1 -->``
/ ``<!-- results:metrics -->`` / ``<!-- results:pareto -->`` and ``<!-- /results -->``
in the given files, so the numbers there always come from these files. The
Pareto table lists the generators no other row beats on all of test Parzen
(higher), FD (lower) and recall (higher), against the target of issue #15.
"""
import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from npgan import files  # noqa: E402

PAPER = [("DBN (paper)", "138 ± 2"), ("Stacked CAE (paper)", "121 ± 1.6"),
         ("Deep GSN (paper)", "214 ± 1.1"), ("Adversarial nets (paper)", "225 ± 2")]


def load_rows(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            got = json.load(f)
        for r in got if isinstance(got, list) else [got]:
            r.setdefault("label", r.get("source", os.path.basename(p)))
            r["file"] = os.path.relpath(p)
            rows.append(r)
    return rows


def _parzen(r):
    p = r.get("parzen")
    return f"{p['ll_mean']:.1f} ± {p['ll_se']:.1f}" if p else "–"


def _epochs(r):
    if "epoch" not in r:
        return ""
    return f"{r['epoch']} ({r['train_seconds'] / 60:.0f} min)" if "train_seconds" in r else str(r["epoch"])


def table1(rows):
    lines = ["| model | test Parzen LL | FD | recall | epochs (training time) |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {v} | | | |" for name, v in PAPER]
    for r in rows:
        lines.append(f"| {r['label']} | {_parzen(r)} | {r['fd']:.2f} | {r['recall']:.3f} | {_epochs(r)} |")
    return "\n".join(lines)


def metrics_table(rows):
    lines = ["| samples | Parzen LL ± se | FD | classifier score | classes covered | precision | recall "
             "| epochs (training time) | rows file |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {_parzen(r)} | {r['fd']:.2f} | {r['score']:.2f} | "
                     f"{r['classes_covered']} | {r['precision']:.3f} | {r['recall']:.3f} | {_epochs(r)} | "
                     f"`{r['file']}` |")
    return "\n".join(lines)


TARGET = {"parzen": 225.0, "fd": 5.0, "recall": 0.75}     # issue #15: all three at once


def _scores(r):
    return r["parzen"]["ll_mean"], -r["fd"], r["recall"]          # higher is better in each


def pareto_rows(rows):
    """The generator rows (those with an epoch) that no other generator row
    dominates on (test Parzen, FD, recall), in their original order."""
    gens = [r for r in rows if r.get("parzen") and "epoch" in r]
    def dominated(r):
        return any(all(a >= b for a, b in zip(_scores(o), _scores(r))) and _scores(o) != _scores(r)
                   for o in gens)
    return [r for r in gens if not dominated(r)]


def pareto_table(rows):
    lines = ["| generator | test Parzen LL | FD | recall | training time | short of the target | rows file |",
             "|---|---|---|---|---|---|---|"]
    for r in pareto_rows(rows):
        ll = r["parzen"]["ll_mean"]
        short = [f"Parzen {ll - TARGET['parzen']:+.1f}"] if ll < TARGET["parzen"] else []
        short += [f"FD {r['fd'] - TARGET['fd']:+.2f}"] if r["fd"] > TARGET["fd"] else []
        short += [f"recall {r['recall'] - TARGET['recall']:+.3f}"] if r["recall"] < TARGET["recall"] else []
        t = f"{r['train_seconds'] / 60:.0f} min" if "train_seconds" in r else ""
        lines.append(f"| {r['label']} | {_parzen(r)} | {r['fd']:.2f} | {r['recall']:.3f} | {t} | "
                     f"{', '.join(short) or 'none: target met'} | `{r['file']}` |")
    return "\n".join(lines)


def splice(path, marker, table):
    """Replace the text between <!-- results:MARKER --> and <!-- /results --> in path."""
    text = open(path).read()
    pat = re.compile(r"(<!-- results:%s -->\n).*?(<!-- /results -->)" % re.escape(marker), re.S)
    if not pat.search(text):
        raise SystemExit(f"{path}: no <!-- results:{marker} --> ... <!-- /results --> block")
    files.write_text(path, pat.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text, count=1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rows", nargs="+", help="JSON files of result rows")
    p.add_argument("--readme", help="file with a <!-- results:table1 --> block (README.md)")
    p.add_argument("--metrics", help="file with <!-- results:metrics --> and <!-- results:pareto --> blocks "
                                     "(results/mnist/metrics.md)")
    a = p.parse_args(argv)
    rows = load_rows(a.rows)
    t1, mt, pt = table1(rows), metrics_table(rows), pareto_table(rows)
    print(t1 + "\n\n" + mt + "\n\n" + pt)
    if a.readme:
        splice(a.readme, "table1", t1)
    if a.metrics:
        splice(a.metrics, "metrics", mt)
        splice(a.metrics, "pareto", pt)


if __name__ == "__main__":
    main()
