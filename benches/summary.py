#!/usr/bin/env python3
"""Prints criterion results as a table: benchmark, median time, median throughput.

Usage: benches/summary.py [GROUP...]   (reads target/criterion/<group>/**/new/)
"""
import json
import os
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")
groups = sys.argv[1:] or sorted(os.listdir(root))

def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.1f} ns"

for group in groups:
    for dirpath, _, files in sorted(os.walk(os.path.join(root, group))):
        if not dirpath.endswith(os.sep + "new") or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "estimates.json")) as f:
            median = json.load(f)["median"]["point_estimate"]
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        tp = bench.get("throughput") or {}
        if "Bytes" in tp:
            rate = tp["Bytes"] / median  # bytes per ns = GB/s
            rate_s = f"{rate:.2f} GB/s" if rate >= 1 else f"{rate * 1000:.0f} MB/s"
        elif "Elements" in tp:
            rate_s = f"{tp['Elements'] / median * 1e9 / 1e6:.2f} M/s"
        else:
            rate_s = ""
        print(f"{bench['full_id']:<45} {fmt_time(median):>12} {rate_s:>14}")
