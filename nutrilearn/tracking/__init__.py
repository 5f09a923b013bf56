"""Prediction and feedback records, the durable spool, the MLflow writer and reader.

``records`` is light; ``logger`` (``PredictionLogger``), ``reader`` (``PredictionReader``)
and ``spool`` (``Spool``) are imported from their modules so that importing records never
pulls in pandas or MLflow.
"""

from nutrilearn.tracking.records import FeedbackRecord, PredictionRecord

__all__ = ["FeedbackRecord", "PredictionRecord"]
