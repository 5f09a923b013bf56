"""Every drift check is an MLflow run in experiment ``nutrilearn-monitoring``, beside the
prediction batches, so the history of verdicts lives where the predictions do.

A run holds params (the two windows, alpha, corrections, the embedding sample cap),
metrics (per signal: statistic, p-value, distance; per image property and per food test:
p-values), tags (verdict, severity, drifted signals) and the full report as
``drift_report.json``.
"""

from __future__ import annotations

import re

import pandas as pd

from nutrilearn.config import Settings
from nutrilearn.monitoring.drift import DriftReport, EmbeddingDetector
from nutrilearn.tracking import store

EXPERIMENT = "nutrilearn-monitoring"
KIND_TAG = "nutrilearn.kind"
KIND = "drift_check"
_METRIC_NAME = re.compile(r"[^0-9A-Za-z_./ -]")


def _metric(name: str) -> str:
    return _METRIC_NAME.sub("_", name)[:250]


def experiment_id(client, settings: Settings, create: bool = True) -> str | None:
    """The monitoring experiment (on the default sqlite store its artifacts go under
    ``settings.artifact_root``), created on first use; safe if another process races us."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None or not create:
        return exp.experiment_id if exp is not None else None
    try:
        return client.create_experiment(
            EXPERIMENT, artifact_location=store.artifact_location(settings, settings.tracking_uri),
            tags={"mlflow.note.content": "NutriLearn monitoring: one run per drift check (nutrilearn drift, "
                  "the Drift page). Verdict in tags, statistics and p-values in metrics."})
    except MlflowException:
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            raise
        return exp.experiment_id


def report_params(report: DriftReport, monitor_detectors=()) -> dict[str, str]:
    params = {"alpha": report.alpha, "correction": "holm across signals; holm within food and image"}
    for side, info in (("reference", report.reference), ("current", report.current)):
        for key, value in info.items():
            params[f"{side}.{key}"] = value
    for det in monitor_detectors:
        if isinstance(det, EmbeddingDetector):
            params["embedding.sample_cap"], params["embedding.permutations"] = det.sample_cap, det.permutations
    return {k: str(v)[:500] for k, v in params.items()}


def report_metrics(report: DriftReport) -> dict[str, float]:
    metrics: dict[str, float] = {"drifted": float(report.drifted), "elapsed_s": report.elapsed_s}
    for r in report.results:
        for name, value in (("statistic", r.statistic), ("p_value", r.p_value), ("distance", r.distance),
                            ("n_reference", r.n_reference), ("n_current", r.n_current),
                            ("drifted", float(r.drifted))):
            metrics[f"{r.signal}.{name}"] = value
        if r.signal == "image":
            for c in r.checks:
                metrics[_metric(f"image.{c.feature}.p_value")] = c.p_adjusted
                metrics[_metric(f"image.{c.feature}.ks_d")] = c.statistic
        for key in ("psi", "chi2_p_value", "wasserstein", "mmd2", "domain_auc"):
            if key in r.details:
                metrics[f"{r.signal}.{key}"] = r.details[key]
    return {k: float(v) for k, v in metrics.items() if v is not None and pd.notna(v)}


def log_drift_check(report: DriftReport, settings: Settings | None = None, run_name: str | None = None,
                    detectors=(), tags: dict[str, str] | None = None,
                    extra_metrics: dict[str, float] | None = None) -> str:
    """Log one drift check as an MLflow run; returns its run id. ``extra_metrics`` adds
    figures beside the report's (the CLI adds estimated and realized accuracy, ECE)."""
    from mlflow.entities import Metric, Param, RunTag

    settings = settings or Settings.from_env()
    client = store.make_client(settings.tracking_uri)
    exp_id = experiment_id(client, settings)
    all_tags = {KIND_TAG: KIND, "verdict": report.verdict, "severity": report.severity,
                "drifted_signals": ",".join(report.drifted_signals) or "none", **(tags or {})}
    run = client.create_run(exp_id, run_name=run_name or f"drift-{report.verdict.replace(' ', '-')}",
                            tags=all_tags)
    run_id = run.info.run_id
    try:
        now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(_metric(k), float(v), now, 0)
                     for k, v in {**report_metrics(report), **(extra_metrics or {})}.items()
                     if v is not None and pd.notna(v)],
            params=[Param(k, v) for k, v in report_params(report, detectors).items()],
            tags=[RunTag("recommendation", report.recommendation[:4900])],
        )
        client.log_dict(run_id, report.to_dict(), "drift_report.json")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def drift_history(settings: Settings | None = None, max_results: int = 200) -> pd.DataFrame:
    """Past drift checks, newest first: time, verdict, severity, drifted signals, p-values."""
    settings = settings or Settings.from_env()
    client = store.make_client(settings.tracking_uri)
    exp_id = experiment_id(client, settings, create=False)
    columns = ["run_id", "time", "verdict", "severity", "drifted_signals", "reference", "current",
               "food.p_value", "confidence.p_value", "image.p_value", "embedding.p_value"]
    if exp_id is None:
        return pd.DataFrame(columns=columns)
    runs = client.search_runs([exp_id], filter_string=f"tags.`{KIND_TAG}` = '{KIND}'",
                              order_by=["attributes.start_time DESC"], max_results=max_results)
    rows = [{"run_id": r.info.run_id, "time": pd.Timestamp(r.info.start_time, unit="ms", tz="UTC"),
             "verdict": r.data.tags.get("verdict"), "severity": r.data.tags.get("severity"),
             "drifted_signals": r.data.tags.get("drifted_signals"),
             "reference": r.data.params.get("reference.spec"), "current": r.data.params.get("current.spec"),
             **{c: r.data.metrics.get(c) for c in columns[7:]}} for r in runs]
    return pd.DataFrame(rows, columns=columns)
