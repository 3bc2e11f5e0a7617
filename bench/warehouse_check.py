"""What bench/warehouse.sh needs besides the two engines (standard library only).

    warehouse_check.py evict DIR                       drops DIR's files from the page cache
        (posix_fadvise DONTNEED), so the next read comes from the disk
    warehouse_check.py compare A.csv B.csv             exits 1 unless both answers have the
        same groups, transaction counts, incurred and premium to the cent, and loss ratios
        equal to 1e-9 (relative); prints the number of groups
"""

import csv
import os
import sys
from decimal import Decimal


def evict(out):
    for root, _, files in os.walk(out):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cent = Decimal("0.01")
    answer = {}
    for r in rows:
        key = (r["carrier"], r["line_of_business"], r["month"])
        if key in answer:
            sys.exit(f"{path}: group {key} appears twice")
        answer[key] = (
            int(r["transactions"]),
            Decimal(r["incurred"]).quantize(cent),
            Decimal(r["premium"]).quantize(cent),
            float(r["loss_ratio"]),
        )
    return answer


def compare(a_path, b_path):
    a, b = load(a_path), load(b_path)
    if a.keys() != b.keys():
        only_a = sorted(a.keys() - b.keys())[:5]
        only_b = sorted(b.keys() - a.keys())[:5]
        sys.exit(f"the groups differ: only in {a_path}: {only_a}; only in {b_path}: {only_b}")
    for key in sorted(a):
        (na, ia, pa, ra), (nb, ib, pb, rb) = a[key], b[key]
        if (na, ia, pa) != (nb, ib, pb) or abs(ra - rb) > 1e-9 * max(abs(ra), abs(rb)):
            sys.exit(f"group {key}: {a_path} has {a[key]}, {b_path} has {b[key]}")
    if not a:
        sys.exit("both answers are empty")
    print(len(a))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "evict":
        evict(args[0])
    elif cmd == "compare":
        compare(args[0], args[1])
    else:
        sys.exit(f"unknown command {cmd}")
