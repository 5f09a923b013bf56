"""What serves predictions: the classifier and the model version it stands for.

The backbone is expensive (TensorFlow import ~5 s, model load ~2 s), so callers build it
once per process (``st.cache_resource`` in the app, a session fixture in tests).
"""

from __future__ import annotations

from nutrilearn.config import Settings
from nutrilearn.pipeline import Analyzer, ModelInfo, RecordSink


def load_classifier(settings: Settings):
    """The ImageNet food classifier (version 1), building the model file if needed."""
    from nutrilearn.vision.classifier import FoodClassifier

    return FoodClassifier.load(settings.models_dir)


def build_analyzer(settings: Settings, classifier=None, sink: RecordSink | None = None) -> Analyzer:
    classifier = classifier if classifier is not None else load_classifier(settings)
    return Analyzer(classifier, ModelInfo(), settings, sink)


def prediction_logger(settings: Settings):
    """The process's ``PredictionLogger``: spools every record, flushes batches to MLflow.

    Build it once per process (``st.cache_resource`` in the app) and pass it as the
    analyzer's ``sink``; ``status()`` feeds the sidebar, ``close(timeout)`` is optional
    (records left in the spool go with the next flush, in this process or the next).
    """
    from nutrilearn.tracking.logger import PredictionLogger

    return PredictionLogger(settings)
