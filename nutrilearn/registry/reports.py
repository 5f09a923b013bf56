"""Files logged with a training or evaluation run: JSON, CSV tables and two PNG charts."""

from __future__ import annotations

import csv
import io
import json

from nutrilearn.answers import percent
from nutrilearn.registry.metrics import Evaluation


def _csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def confusion_csv(ev: Evaluation) -> str:
    columns = ev.labels + ["other"]
    rows = [{"true": label} | dict(zip(columns, counts)) for label, counts in zip(ev.labels, ev.confusion)]
    return _csv(rows)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def reliability_png(ev: Evaluation, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    bins = [b for b in ev.reliability if b["count"]]
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
    ax.bar([b["bin_lower"] for b in bins], [b["accuracy"] for b in bins], width=0.1, align="edge",
           edgecolor="black", alpha=0.7, label="accuracy in bin")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="black", markersize=3)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"{title}\nECE {ev.ece:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def confusion_png(ev: Evaluation, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ev.labels + ["other"]
    n = len(ev.labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(columns), 1.2 + 0.5 * n))
    ax.imshow(ev.confusion, cmap="Blues")
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), ev.labels, fontsize=7)
    for i, row in enumerate(ev.confusion):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=6)
    ax.set(xlabel="predicted", ylabel="true", title=f"{title}: accuracy {percent(ev.accuracy)}")
    return _png(fig)


def evaluation_files(ev: Evaluation, title: str, extra: dict | None = None) -> dict[str, bytes | str]:
    """The artifacts of one evaluation, by file name."""
    return {
        "evaluation.json": json.dumps(ev.to_dict() | (extra or {}), indent=1, default=str),
        "per_class.csv": _csv(ev.per_class),
        "confusion_matrix.csv": confusion_csv(ev),
        "reliability.csv": _csv(ev.reliability),
        "confusion_matrix.png": confusion_png(ev, title),
        "reliability.png": reliability_png(ev, title),
    }


def history_csv(history) -> str:
    return _csv([h.__dict__ for h in history])
