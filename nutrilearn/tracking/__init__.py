"""Prediction and feedback records, the durable spool, the MLflow writer and reader."""

from nutrilearn.tracking.records import FeedbackRecord, PredictionRecord

__all__ = ["FeedbackRecord", "PredictionRecord"]
