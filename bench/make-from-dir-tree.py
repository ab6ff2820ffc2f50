#!/usr/bin/env python3
"""Writes a tree like the one the from_dir throughput figures were measured on (same
sizes and layout): 50,000 files in 2,250 directories, 1.5 GB, log-normal sizes (about
1,000 of them inline-sized), content sliced from 64 MiB of random bytes.

    python3 bench/make-from-dir-tree.py /dev/shm/fromdir-bench
    cargo run --release --example scan_throughput -- /dev/shm/fromdir-bench
"""
import os
import random
import sys

root = sys.argv[1]
random.seed(1)
pool = os.urandom(64 << 20)
n = 50000
sizes = [int(random.lognormvariate(8.5, 2.0)) for _ in range(n)]
scale = 1.5e9 / sum(sizes)
sizes = [min(int(s * scale), 60 << 20) for s in sizes]
for i, size in enumerate(sizes):
    d = os.path.join(root, "d%03d/s%02d" % (i % 250, (i // 250) % 8))
    os.makedirs(d, exist_ok=True)
    off = random.randrange(0, len(pool) - size) if size < len(pool) else 0
    with open(os.path.join(d, "f%d" % i), "wb") as f:
        while size > 0:
            chunk = min(size, len(pool) - off)
            f.write(pool[off:off + chunk])
            size -= chunk
            off = 0
print("%d files, %d bytes" % (n, sum(sizes)))
