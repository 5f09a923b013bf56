"""What serves predictions: the classifier and the model version it stands for.

Serving runs the backbone through LiteRT (``NUTRILEARN_RUNTIME``, default "litert": the
runtime imports in ~0.1 s and loads the model in ~0.05 s, no TensorFlow in the process);
"keras" keeps the TensorFlow path (import ~5 s, model load ~2 s). Either way callers
build it once per process (``st.cache_resource`` in the app, a session fixture in tests).
"""

from __future__ import annotations

from nutrilearn.config import Settings
from nutrilearn.pipeline import RecordSink


def load_classifier(settings: Settings, runtime: str | None = None):
    """The ImageNet food classifier (version 1) in ``runtime`` (default: the setting),
    building the model files if needed."""
    from nutrilearn.vision.classifier import FoodClassifier

    return FoodClassifier.load(settings.models_dir, runtime=runtime or settings.runtime)


def build_analyzer(settings: Settings, classifier=None, sink: RecordSink | None = None):
    """An analyzer serving ``@champion`` of the registered model (re-checked every
    ``NUTRILEARN_ALIAS_REFRESH_S`` s, so an alias move needs no restart) and, when a
    challenger is set, also running it in shadow on ``NUTRILEARN_CHALLENGER_SHARE`` of
    the requests (logged under its own version). Same ``analyze`` as ``Analyzer``;
    see ``nutrilearn.registry.routing``."""
    from nutrilearn.registry.routing import ServingAnalyzer

    classifier = classifier if classifier is not None else load_classifier(settings)
    return ServingAnalyzer(classifier, settings, sink, resolver=alias_resolver(settings))


_RESOLVERS: dict = {}


def alias_resolver(settings: Settings):
    """The process's ``AliasResolver`` for this tracking store (one per store, shared).

    It reads the aliases without importing MLflow when it can (``nutrilearn.alias_lookup``):
    a CLI ``predict`` or a starting app needs no MLflow before its first answer.
    """
    from nutrilearn.alias_lookup import QuickAliasResolver

    key = (settings.tracking_uri, str(settings.models_dir))
    if key not in _RESOLVERS:
        _RESOLVERS[key] = QuickAliasResolver(settings)
    return _RESOLVERS[key]


def current_models(settings: Settings, force: bool = False):
    """Which heads serve now: ``Served(champion=ServedHead(head, ModelInfo), challenger=...)``."""
    return alias_resolver(settings).current(force=force)


def prediction_logger(settings: Settings):
    """The process's ``PredictionLogger``: spools every record, flushes batches to MLflow.

    Build it once per process (``st.cache_resource`` in the app) and pass it as the
    analyzer's ``sink``; ``status()`` feeds the sidebar, ``close(timeout)`` is optional
    (records left in the spool go with the next flush, in this process or the next).
    """
    from nutrilearn.tracking.logger import PredictionLogger

    return PredictionLogger(settings)
