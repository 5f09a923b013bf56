"""Many threads predicting and logging at once: every record present exactly once.

The full-size run (8 x 500, plus a tracking-server outage) is `bench/bench_load.py`.
"""

from __future__ import annotations

import threading

from nutrilearn.pipeline import Photo
from tests.conftest import image_bytes
from tests.tracking_fixtures import loggers, mlflow_db, tracking  # noqa: F401 (fixtures)

THREADS, PER_THREAD = 8, 12


def test_concurrent_predictions_are_logged_exactly_once(classifier, tracking, loggers):
    from nutrilearn.serving import build_analyzer
    from nutrilearn.tracking.reader import PredictionReader

    logger = loggers(tracking, batch_max_records=20)
    analyzer = build_analyzer(tracking, classifier, sink=logger)
    photos = [Photo(f"{i}.png", image_bytes(mode="noise", size=(200 + i, 160))) for i in range(4)]
    photos.append(Photo("bad.txt", b"not an image"))  # failures are records too
    sent: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(PER_THREAD):
                (rec,) = analyzer.analyze([photos[(k + i) % len(photos)]], user=f"t{k}", source="api")
                with lock:
                    sent.append(rec.request_id)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert logger.flush(120)
    df = PredictionReader(tracking).predictions(include_pending=False)
    assert len(sent) == THREADS * PER_THREAD
    assert sorted(df["request_id"]) == sorted(sent)  # all present, none twice
    assert (df["status"] == "error").sum() == sum(1 for k in range(THREADS) for i in range(PER_THREAD)
                                                 if (k + i) % len(photos) == len(photos) - 1)
