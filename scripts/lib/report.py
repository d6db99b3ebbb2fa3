"""What the BENCHMARKS.md sections written by scripts/bench-peers.sh share, for their
inline Python (run with PYTHONPATH=scripts/lib): the runs' rates from results.tsv, a
"median (min–max)" cell, and a section's opening lines."""
import statistics
from collections import defaultdict


def rates(path):
    """Each (broker, workload)'s messages per second, run by run, from a results.tsv."""
    found = defaultdict(list)
    for line in open(path):
        broker, workload, _, rate = line.split("\t")[:4]
        found[(broker, workload)].append(float(rate))
    return found


def cell(rs):
    """The median of `rs`, with (min–max) when there are several runs; "–" for none."""
    if not rs:
        return "–"
    c = f"{statistics.median(rs):,.0f}"
    return c + (f" ({min(rs):,.0f}–{max(rs):,.0f})" if len(rs) > 1 else "")


def opening(tag, title, quick):
    """A section's first lines: its start marker, its title, the quick mode's warning."""
    out = [f"<!-- {tag}:start -->", f"## {title}", ""]
    if quick:
        out += ["> **QUICK MODE: small counts, to check the script. Not a measurement.**", ""]
    return out
