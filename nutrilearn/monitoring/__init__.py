"""Monitoring: statistics and system health from logged predictions (pandas in, figures out).

``stats`` covers volumes, confidence, recent predictions and trends; ``health`` covers
latency, errors, request rate and the healthy/degraded/unhealthy status. Both take the
predictions in view as ``filter_predictions`` returns them. Nothing here imports
Streamlit; ``pages/monitoring.py`` only draws what these functions return.
"""

# Names load on first use (PEP 562): importing one submodule (``history``, ``filters``) does
# not import pandas through ``health``/``stats``; ``from nutrilearn.monitoring import X`` is unchanged.
_EXPORTS = {
    **dict.fromkeys((
        'DEGRADED', 'HEALTHY', 'UNHEALTHY', 'HealthReport', 'HealthThresholds', 'Problem',
        'Traffic', 'assess_health', 'dead_letter_table', 'errors_by_type', 'latency_summary',
        'rate_frequency', 'request_rate', 'traffic',
    ), 'health'),
    **dict.fromkeys((
        'TIME_RANGES', 'ConfidenceSummary', 'FeedbackSummary', 'Filters', 'Overview',
        'accuracy_by_version', 'by_user', 'confidence_band', 'confidence_by_version',
        'confidence_histogram', 'confidence_summary', 'daily_trends', 'daily_volume',
        'feedback_summary', 'filter_options', 'filter_predictions', 'is_prepared', 'join_feedback',
        'overview', 'prepare', 'prepare_feedback', 'recent', 'search_mask', 'top_foods',
    ), 'stats'),
}


__all__ = [
    "DEGRADED", "HEALTHY", "UNHEALTHY", "TIME_RANGES",
    "ConfidenceSummary", "FeedbackSummary", "Filters", "HealthReport", "HealthThresholds",
    "Overview", "Problem", "Traffic",
    "accuracy_by_version", "assess_health", "by_user", "confidence_band", "confidence_by_version",
    "confidence_histogram", "confidence_summary", "daily_trends", "dead_letter_table", "daily_volume", "errors_by_type",
    "feedback_summary", "filter_options", "filter_predictions", "latency_summary", "overview",
    "is_prepared", "join_feedback", "prepare", "prepare_feedback", "rate_frequency", "recent",
    "request_rate", "search_mask", "top_foods", "traffic",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
