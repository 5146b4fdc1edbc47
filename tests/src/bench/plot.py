# Draws docs/benchmarks.png from the bench's samples (JSON): one panel per latency measurement,
# mypod and runc side by side (violin + box), log-free linear millisecond axes.
# Run by the bench binary as: /usr/bin/python3 - SAMPLES.json OUT.png (this text on stdin).
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

data = json.load(open(sys.argv[1]))
series = [s for s in data["series"] if s["mypod"] and s["runc"]]
if not series:
    sys.exit("no samples to plot")
cols = 3
rows = (len(series) + cols - 1) // cols
fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
colors = {"mypod": "#2a9d8f", "runc": "#e76f51"}
for ax, s in zip([a for r in axes for a in r], series):
    vals = [s["mypod"], s["runc"]]
    parts = ax.violinplot(vals, showextrema=False)
    for body, name in zip(parts["bodies"], ["mypod", "runc"]):
        body.set_facecolor(colors[name])
        body.set_alpha(0.35)
    ax.boxplot(vals, widths=0.18, showfliers=True, medianprops={"color": "black"},
               flierprops={"markersize": 2})
    ax.set_xticks([1, 2])
    ratio = s.get("ratio")
    ax.set_xticklabels(["mypod", "runc-v2"])
    title = s["title"].strip()
    if ratio is not None:
        title += f"\nmedian ratio mypod/runc = {ratio:.2f}"
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
for ax in [a for r in axes for a in r][len(series):]:
    ax.axis("off")
fig.suptitle(data.get("caption", "mypod vs runc-v2"), fontsize=10)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=90)
