"""``nutrilearn drift``: compare a reference window with a current one; exit 1 on drift.

Windows are specs (see ``nutrilearn.monitoring.windows``): ``last:N``, ``first:N``,
``days:D``, ``range:START..END``, ``champion[:TIME][@N][,version=V]`` over logged
predictions, or ``dir:PATH`` / ``--reference-dir``/``--current-dir`` for photo folders
predicted on the spot (nothing is logged for them). Every check is logged as a run in
MLflow experiment ``nutrilearn-monitoring`` unless ``--no-log``.

Alerts fire only when drift is found: ``--webhook URL`` POSTs the JSON report;
``--on-drift CMD`` runs CMD (split like a shell would, but never run through one) with the
JSON report on standard input and NUTRILEARN_DRIFT_SEVERITY / NUTRILEARN_DRIFT_SIGNALS in
its environment. Exit status: 0 no drift, 1 drift, 2 the check could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_REFERENCE = "first:500"
DEFAULT_CURRENT = "last:500"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("drift", help="test whether recent predictions drifted from a reference (exit 1 on drift)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", default=None, metavar="SPEC",
                   help=f"reference window (default {DEFAULT_REFERENCE})")
    p.add_argument("--current", default=None, metavar="SPEC", help=f"current window (default {DEFAULT_CURRENT})")
    p.add_argument("--reference-dir", type=Path, metavar="DIR", help="reference = the photos in DIR")
    p.add_argument("--current-dir", type=Path, metavar="DIR", help="current = the photos in DIR")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate of the whole report")
    p.add_argument("--every", metavar="FREQ|N", help="also test each chunk of the current window "
                   "(a pandas frequency such as 1D, or a number of predictions)")
    p.add_argument("--live-only", action="store_true", help="leave replayed traffic out")
    p.add_argument("--sample-cap", type=int, default=1000, help="embeddings per window in the MMD test")
    p.add_argument("--permutations", type=int, default=200, help="permutations of the MMD test")
    p.add_argument("--clusters", type=int, default=None, metavar="K",
                   help="clusters in the drill-down (default: one per 100 embeddings, 4 to 12)")
    p.add_argument("--no-log", action="store_true", help="do not log the check to MLflow")
    p.add_argument("--webhook", metavar="URL", help="POST the JSON report here when drift is found")
    p.add_argument("--on-drift", metavar="CMD", help="run CMD when drift is found (report on stdin)")
    p.set_defaults(handler=run)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _windows(args, settings):
    """(reference, current, feedback) from specs and folders; feedback is None for folders."""
    from nutrilearn.monitoring import windows

    ref_spec = f"dir:{args.reference_dir}" if args.reference_dir else args.reference or DEFAULT_REFERENCE
    cur_spec = f"dir:{args.current_dir}" if args.current_dir else args.current or DEFAULT_CURRENT
    parsed = {name: windows.parse_spec(spec) for name, spec in (("reference", ref_spec), ("current", cur_spec))}
    kinds = {name: kind for name, (kind, _) in parsed.items()}
    analyzer = predictions = feedback = None
    if "dir" in kinds.values():
        from nutrilearn.serving import build_analyzer

        analyzer = build_analyzer(settings)
    reader = None
    if any(k != "dir" for k in kinds.values()):
        from nutrilearn.tracking.reader import PredictionReader

        reader = PredictionReader(settings)
    needs_registry = any(kind == "champion" and args_["since"] is None for kind, args_ in parsed.values())
    champion = windows.champion_start(settings) if needs_registry else None
    out = []
    try:
        if reader is not None:
            reader.refresh()
            feedback = reader.feedback(refresh=False)
        for name, spec in (("reference", ref_spec), ("current", cur_spec)):
            if kinds[name] == "dir":
                from nutrilearn.cli.progress import progress_bar

                path = parsed[name][1]["path"]
                with progress_bar(f"predicting {name} photos") as update:
                    out.append(windows.folder_window(analyzer, path, name, progress=update))
            else:  # resolved in the engine: the window's rows only, embeddings for a sample
                from nutrilearn.monitoring import drift_data

                out.append(drift_data.select(reader.history, spec, name, live_only=args.live_only,
                                             champion=champion, embeddings=max(args.sample_cap, drift_data.SAMPLE_CAP)))
    finally:
        if reader is not None:
            reader.close()
    reference, current = out
    return reference, windows.without(current, reference), feedback


def performance_block(reference, current, feedback) -> dict:
    """Accuracy estimated from confidence (CBPE) and, where feedback exists, realized
    accuracy and calibration (ECE), for both windows."""
    from nutrilearn.monitoring import performance

    out = {}
    for w in (reference, current):
        truth = performance.labelled(w.frame, feedback)
        ece, _ = performance.reliability(truth)
        out[w.name] = {**performance.estimate(w.frame, truth), "ece": ece}
    return out


def cluster_block(reference, current, k: int | None = None) -> list[dict]:
    """The drill-down: both windows' embeddings clustered, clusters sorted by |share change|."""
    from nutrilearn.monitoring.clusters import ClusterDrift
    from nutrilearn.monitoring.drift import jsonable

    return jsonable(ClusterDrift(k=k).fit(reference.frame).compare(current.frame).to_list())


def _clusters_text(clusters: list[dict], top: int = 3) -> str:
    """The clusters that moved most, one line each (empty when nothing was clustered)."""
    from nutrilearn.answers import percent
    from nutrilearn.vision.vocabulary import display_name

    lines = [f"  cluster {c['id']}: {percent(c['reference_share'])} -> {percent(c['current_share'])} of the photos "
             f"({percent(c['share_change'], signed=True)}); mostly {', '.join(display_name(f) for f in c['top_foods']) or '-'}; "
             f"e.g. {', '.join(c['examples'][:3])}" for c in clusters[:top]]
    return "\nphoto clusters that moved most:\n" + "\n".join(lines) if lines else ""


def _accuracy_line(perf: dict) -> str:
    from nutrilearn.answers import percent

    parts = []
    for name in ("reference", "current"):
        p = perf.get(name, {})
        if p.get("expected_accuracy") is None:
            continue
        text = f"{name} {percent(p['expected_accuracy'])} estimated"
        if p.get("labelled"):
            text += f", {percent(p['realized_accuracy'])} realized on {p['labelled']} labelled (ECE {p['ece']:.3f})"
        parts.append(text)
    return "accuracy: " + "; ".join(parts) + " (estimate = mean confidence, valid as far as the model is calibrated)"


def _found(info: dict) -> str:
    asked = info.get("asked")
    found = f"n={info.get('n')}" if asked is None else f"asked {asked}, {info.get('n')} found"
    versions = info.get("model_versions")
    return f"{info.get('spec')} ({found}" + (f"; version {versions})" if versions else ")")


def _text(report, run_id, over_time, perf: dict) -> str:
    lines = [f"{report.verdict.upper()} (severity {report.severity}); reference {_found(report.reference)}, "
             f"current {_found(report.current)}" + ("; the model changed between them" if report.model_change else "")]
    for r in report.results:
        p = "-" if r.p_value != r.p_value else f"{r.p_value:.3g}"
        lines.append(f"  {r.signal:<11}{r.verdict:<11}p={p:<10} (alpha {r.threshold:g})  "
                     f"{r.distance_name}={r.distance:.3g} (floor {r.min_distance:g})  {r.note}".rstrip())
    lines.append(report.recommendation)
    lines.append(_accuracy_line(perf))
    if over_time is not None and len(over_time):
        drifted = over_time[over_time["drifted"]]
        lines.append(f"over time: {drifted['start'].nunique()} of {over_time['start'].nunique()} chunk(s) drifted")
    if run_id:
        lines.append(f"logged as MLflow run {run_id} in experiment nutrilearn-monitoring")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from nutrilearn.config import Settings
    from nutrilearn.monitoring.drift import DriftMonitor, jsonable
    from nutrilearn.monitoring.windows import WindowSpecError

    if not 0 < args.alpha < 1:
        return _fail("--alpha must be between 0 and 1")
    if args.webhook and not args.webhook.startswith(("http://", "https://")):
        return _fail("--webhook must be an http:// or https:// URL")
    settings = Settings.from_env()
    try:
        reference, current, feedback = _windows(args, settings)
    except WindowSpecError as exc:
        return _fail(str(exc))
    except Exception as exc:  # the tracking store is unreachable, a folder unreadable...
        return _fail(f"could not read the windows: {exc}")
    for w in (reference, current):
        if w.n == 0:
            return _fail(f"the {w.name} window {w.spec!r} has no successful predictions")
    monitor = DriftMonitor(args.alpha, sample_cap=args.sample_cap, permutations=args.permutations).fit(reference.frame)
    report = monitor.report(current.frame, reference.describe(), current.describe())
    over_time = monitor.over_time(current.frame, int(args.every) if str(args.every).isdigit() else args.every) \
        if args.every else None
    perf = jsonable(performance_block(reference, current, feedback))
    run_id = None
    if not args.no_log:
        from nutrilearn.monitoring.drift_runs import log_drift_check

        extra = {f"performance.{w}.{k}": v for w, row in perf.items() for k, v in row.items()
                 if k in ("expected_accuracy", "realized_accuracy", "labelled", "ece")}
        try:
            run_id = log_drift_check(report, settings, detectors=monitor.detectors, extra_metrics=extra)
        except Exception as exc:  # the verdict still stands; say why it is not in MLflow
            print(f"warning: drift check not logged to MLflow: {exc}", file=sys.stderr)
    clusters = cluster_block(reference, current, args.clusters)
    payload = {**report.to_dict(), "run_id": run_id, "performance": perf, "clusters": clusters}
    if over_time is not None:
        payload["over_time"] = json.loads(over_time.to_json(orient="records", date_format="iso"))
    print(json.dumps(payload) if args.json else _text(report, run_id, over_time, payload["performance"])
          + _clusters_text(clusters), flush=True)
    if report.drifted:
        alert(payload, args.webhook, args.on_drift)
    return 1 if report.drifted else 0


def alert(payload: dict, webhook: str | None, command: str | None) -> None:
    """Fire the configured alerts; failures are reported on stderr, never raised."""
    body = json.dumps(payload).encode()
    if webhook:
        import urllib.request

        request = urllib.request.Request(webhook, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310 (scheme checked in run)
                pass
        except Exception as exc:
            print(f"warning: webhook {webhook} failed: {exc}", file=sys.stderr)
    if command:
        import os
        import shlex
        import subprocess

        env = {**os.environ, "NUTRILEARN_DRIFT_SEVERITY": payload["severity"],
               "NUTRILEARN_DRIFT_SIGNALS": ",".join(payload["drifted_signals"])}
        try:
            done = subprocess.run(shlex.split(command), input=body, env=env, timeout=120, check=False)
            if done.returncode:
                print(f"warning: --on-drift command exited with {done.returncode}", file=sys.stderr)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            print(f"warning: --on-drift command failed: {exc}", file=sys.stderr)
