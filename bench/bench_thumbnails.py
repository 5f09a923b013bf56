"""Thumbnail bench: what keeping a thumbnail with every prediction costs in bytes and time.

Run on demand (not part of the test suite); everything lives in a temporary directory:

    .venv/bin/python bench/bench_thumbnails.py                 # 1,000 food10 photos each way
    .venv/bin/python bench/bench_thumbnails.py --n 200         # quick look

Predicts the same real photos twice through the real path (LiteRT model, ``Analyzer``,
``PredictionLogger`` -> spool -> one MLflow run per 500-record batch -> mirror), once with
thumbnails (the default) and once with ``NUTRILEARN_KEEP_THUMBNAILS=0``, each into its own
experiment of one sqlite store, and reports per prediction:

1. the spool payload (JSON) bytes;
2. the batch runs' ``predictions.parquet`` bytes (what MLflow's artifact store keeps);
3. the mirror's day-file bytes (what monitoring queries), and within them the thumbnail
   column's compressed bytes beside the bytes of the columns figures read
   (``FIGURE_COLUMNS``): what a figure's query would read either way;
4. the time to make a thumbnail from the decoded photo (median, p95).

``--scale-dir DIR`` instead times the Photos page's gallery queries (``monitoring.photos``)
over a store ``bench/bench_scale.py`` built in DIR, reading its mirror only (a week and
all history, warm process, median of 3):

    .venv/bin/python bench/bench_thumbnails.py --scale-dir /work/scale
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def photos_for(folder: Path, n: int):
    from nutrilearn.pipeline import photos_from_paths

    files = sorted(folder.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no photos under {folder} (expects <label>/*.jpg)")
    found = [p for _, p in photos_from_paths(files[:n])]
    while len(found) < n:  # fewer photos than asked: go round again
        found += found[: n - len(found)]
    return found


def column_bytes(files: list[str]) -> dict[str, int]:
    """Compressed bytes of each column over the files (from the Parquet footers)."""
    import pyarrow.parquet as pq

    sizes: dict[str, int] = {}
    for path in files:
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                col = group.column(c)
                name = col.path_in_schema.split(".")[0]
                sizes[name] = sizes.get(name, 0) + col.total_compressed_size
    return sizes


def run(photos, keep: bool, home: Path, classifier) -> dict:
    from nutrilearn.config import Settings
    from nutrilearn.monitoring.history import FIGURE_COLUMNS
    from nutrilearn.pipeline import Analyzer, ModelInfo
    from nutrilearn.tracking import store
    from nutrilearn.tracking.logger import PredictionLogger
    from nutrilearn.tracking.reader import PredictionReader

    os.environ["NUTRILEARN_KEEP_THUMBNAILS"] = "1" if keep else "0"
    os.environ["NUTRILEARN_PREDICTIONS_EXPERIMENT"] = f"bench-thumbnails-{'on' if keep else 'off'}"
    os.environ["NUTRILEARN_SPOOL_DIR"] = str(home / f"spool-{keep}")
    settings = Settings.from_env()
    logger = PredictionLogger(settings, batch_max_records=500)
    records = Analyzer(classifier, ModelInfo(), settings, logger).analyze(photos, user="bench", source="cli")
    spool_bytes = sum(len(r.to_json()) for r in records)
    if not logger.flush(600):
        raise SystemExit(f"flush failed: {logger.status()}")
    logger.close()
    reader = PredictionReader(settings)
    reader.refresh()
    client = store.make_client(settings.tracking_uri)
    batch_bytes = 0
    for run_id in reader.batches(refresh=False).query("kind == 'predictions'")["run_id"]:
        artifacts = store.local_artifact_dir(client.get_run(run_id).info.artifact_uri)
        batch_bytes += (artifacts / store.ARTIFACTS["predictions"]).stat().st_size
    files = reader.mirror.files("predictions")
    mirror_bytes = sum(Path(f).stat().st_size for f in files)
    cols = column_bytes(files)
    reader.close()
    n = len(records)
    ok = sum(r.ok for r in records)
    return {
        "keep_thumbnails": keep, "predictions": n, "ok": ok,
        "spool_json_bytes_per_prediction": spool_bytes / n,
        "batch_parquet_bytes_per_prediction": batch_bytes / n,
        "mirror_bytes_per_prediction": mirror_bytes / n,
        "thumbnail_column_bytes_per_prediction": cols.get("thumbnail", 0) / n,
        "figure_columns_bytes_per_prediction": sum(v for k, v in cols.items() if k in FIGURE_COLUMNS) / n,
        "thumbnail_bytes_median": statistics.median([len(r.thumbnail) for r in records if r.thumbnail] or [0]),
        "thumbnail_bytes_max": max([len(r.thumbnail) for r in records if r.thumbnail] or [0]),
    }


def thumbnail_times(photos, settings, limit: int = 300) -> list[float]:
    from nutrilearn.vision.images import decode_image
    from nutrilearn.vision.thumbnails import make_thumbnail

    out = []
    for photo in photos[:limit]:
        image = decode_image(photo.data, settings.max_upload_bytes, settings.max_pixels).image
        t0 = time.perf_counter()
        make_thumbnail(image)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def time_galleries(directory: Path) -> None:
    """Each gallery over a bench_scale store's mirror: a week and all history (read only)."""
    from datetime import timedelta

    for line in (directory / "env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ[key.strip()] = value.strip()
    from nutrilearn.config import Settings
    from nutrilearn.monitoring import photos
    from nutrilearn.monitoring.filters import Filters
    from nutrilearn.monitoring.history import History
    from nutrilearn.tracking.mirror import Mirror

    settings = Settings.from_env()
    mirror = Mirror(settings, directory=settings.mirror_dir)
    history = History(mirror, None)
    print(f"{mirror.stats()['prediction_rows']:,} predictions mirrored; load average {os.getloadavg()[0]:.1f}")
    for name, filters in (("week", Filters.last(timedelta(days=7), hide_replayed=False)),
                          ("all history", Filters(hide_replayed=False))):
        for which in photos.GALLERIES:
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                frame = photos.gallery(history, which, filters, n=24)
                times.append(time.perf_counter() - t0)
            print(f"{name:<12} {which:<16} {len(frame):>3} photos  {statistics.median(times):.3f} s")
    history.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="predictions each way")
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "food10" / "test")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--scale-dir", type=Path, help="time the gallery queries over a bench_scale store instead")
    args = parser.parse_args()
    if args.scale_dir:
        time_galleries(args.scale_dir)
        return

    with tempfile.TemporaryDirectory(prefix="bench-thumbnails-") as tmp:
        home = Path(tmp)
        os.environ["NUTRILEARN_HOME"] = str(home)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.setdefault("NUTRILEARN_MODELS_DIR", str(ROOT / "models"))
        from nutrilearn.config import Settings
        from nutrilearn.serving import load_classifier

        settings = Settings.from_env()
        classifier = load_classifier(settings)
        photos = photos_for(args.photos, args.n)
        results = [run(photos, True, home, classifier), run(photos, False, home, classifier)]
        times = sorted(thumbnail_times(photos, settings))
    load = os.getloadavg()[0]
    summary = {"runs": results, "thumbnail_ms_median": statistics.median(times),
               "thumbnail_ms_p95": times[int(0.95 * (len(times) - 1))], "load_average_1m": load}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    on, off = results
    print(f"{on['predictions']} predictions each way ({on['ok']} ok), load average {load:.1f}")
    print(f"{'bytes per prediction':<34}{'with':>10}{'without':>10}{'added':>10}")
    for key, label in (("spool_json_bytes_per_prediction", "spool payload (JSON)"),
                       ("batch_parquet_bytes_per_prediction", "batch predictions.parquet"),
                       ("mirror_bytes_per_prediction", "mirror day files"),
                       ("thumbnail_column_bytes_per_prediction", "  of which the thumbnail column"),
                       ("figure_columns_bytes_per_prediction", "  of which figure columns")):
        print(f"{label:<34}{on[key]:>10.0f}{off[key]:>10.0f}{on[key] - off[key]:>+10.0f}")
    print(f"thumbnail: median {on['thumbnail_bytes_median']:.0f} B, max {on['thumbnail_bytes_max']} B; "
          f"made in median {summary['thumbnail_ms_median']:.2f} ms, p95 {summary['thumbnail_ms_p95']:.2f} ms")


if __name__ == "__main__":
    main()
