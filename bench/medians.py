#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Medians of several lm-bench --json runs, as a Markdown table.

    for i in 1 2 3 4 5; do lm-bench ... --json > run$i.json; done
    bench/medians.py run*.json

One row per case (mode, layer, transport, backend, placement): the median of
each run's p50/p99 (or msgs/s) and of each run's ratio to the floor of the
same run, with the ratio's range over the runs. A developer's tool: lm-bench
itself needs no Python.
"""
import json
import statistics
import sys


def main(paths):
    rows = {}
    order = []
    for path in paths:
        floors = {}
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                o = json.loads(line)
                group = (o["mode"], o["transport"], o["cpu"], o.get("peers"))
                if o["impl"] == "floor":
                    floors[group] = o.get("msgs_per_s")
                elif o["mode"] == "throughput" and floors.get(group) and o.get("msgs_per_s"):
                    # Throughput: the case's rate over the floor's (higher is better).
                    o["rate_ratio"] = o["msgs_per_s"] / floors[group]
                key = (o["mode"], o["transport"], o["cpu"].split("(")[0], o["impl"],
                       o.get("backend") or "-", o.get("peers"))
                if key not in rows:
                    rows[key] = []
                    order.append(key)
                rows[key].append(o)
    print("| mode | transport | cpu | case | backend | peers | runs | p50 µs | p99 µs | msgs/s "
          "| **x50** | x50 range | **x99** | x99 range | **rate/floor** | rate range "
          "| wake/s max | RSS B/idle client |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in order:
        runs = [o for o in rows[key] if o.get("status") == "ok"]
        if not runs:
            o = rows[key][0]
            why = "%s: %s" % (o.get("status"), o.get("why", o.get("reason", "")))
            print("| %s | %s | %s | %s | %s | %s | 0 | %s |||||||||||" % (key + (why,)))
            continue

        def med(field):
            v = [o[field] for o in runs if o.get(field) is not None]
            return statistics.median(v) if v else None

        def rng(field):
            v = [o[field] for o in runs if o.get(field) is not None]
            return "%.2f–%.2f" % (min(v), max(v)) if v else "-"

        def fmt(v, f):
            return f % v if v is not None else "-"

        wakes = [o["wake_per_s"] for o in runs if o.get("wake_per_s") is not None]
        print("| %s | %s | %s | %s | %s | %s | %d | %s | %s | %s | **%s** | %s | **%s** | %s "
              "| **%s** | %s | %s | %s |" % (
            key[0], key[1], key[2], key[3], key[4], key[5], len(runs),
            fmt(med("p50_us"), "%.1f"), fmt(med("p99_us"), "%.1f"),
            fmt(med("msgs_per_s"), "%.0f"),
            fmt(med("ratio_p50"), "%.2f"), rng("ratio_p50"),
            fmt(med("ratio_p99"), "%.2f"), rng("ratio_p99"),
            fmt(med("rate_ratio"), "%.2f"), rng("rate_ratio"),
            fmt(max(wakes) if wakes else None, "%.1f"),
            fmt(med("server_rss_per_idle_client"), "%.0f")))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
