"""Model versions from the shell: ``train``, ``evaluate``, ``versions``, ``promote``,
``set-challenger``, ``rollback``.

Alias moves need the admin token: the CLI acts as admin when ``NUTRILEARN_ADMIN_TOKEN`` is
set in its environment (as the app does when the same token is typed in). Exit codes: 0
done, 1 error, 2 refused because the new champion cannot name foods users were recently
given (``--allow-vocabulary-change`` accepts it), 3 refused (no admin token).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from nutrilearn.answers import percent

EXIT_REFUSED = 3
EXIT_VOCABULARY = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a head on a folder of class folders and register it as a version")
    p.add_argument("--data", type=Path, required=True, action="append", metavar="DIR",
                   help="folder of class folders (DIR/<label>/*.jpg); repeat to combine")
    p.add_argument("--base", type=Path, action="append", default=[], metavar="DIR",
                   help="more class folders to add, e.g. kept feedback photos (NUTRILEARN_FEEDBACK_DIR)")
    p.add_argument("--eval-data", type=Path, action="append", default=[], metavar="DIR",
                   help="photos to evaluate (and compare with the champion) on; default: a held-out validation split")
    p.add_argument("--promote-if-better", action="store_true",
                   help="promote to champion if it beats the champion on the same evaluation photos (admin)")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--l2", type=float, default=None, help="L2 penalty on the standardised weights")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--flip", action="store_true",
                   help="add mirror images as training examples (twice the feature work; no gain on food10)")
    p.add_argument("--allow-vocabulary-change", action="store_true",
                   help="with --promote-if-better: promote even if the new version cannot name foods the champion "
                        "named in recent traffic")
    _common(p)
    p.set_defaults(handler=run_train)

    p = sub.add_parser("evaluate", help="score a registered version on labelled photos and log it")
    p.add_argument("--version", required=True, help="version number, or an alias (champion, challenger)")
    p.add_argument("--data", type=Path, required=True, action="append", metavar="DIR")
    _common(p)
    p.set_defaults(handler=run_evaluate)

    p = sub.add_parser("compare", help="score two versions on the same labelled photos, on common ground")
    p.add_argument("a", help="version number or alias")
    p.add_argument("b", help="version number or alias")
    p.add_argument("--data", type=Path, required=True, action="append", metavar="DIR")
    _common(p)
    p.set_defaults(handler=run_compare)

    p = sub.add_parser("versions", help="list registered versions, their aliases and figures")
    p.add_argument("--history", action="store_true", help="show the alias history instead")
    _common(p)
    p.set_defaults(handler=run_versions)

    for name, helptext in (("promote", "make a version the champion (admin)"),
                           ("set-challenger", "run a version beside the champion on live traffic (admin)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("version", help="version number" + (", or 'none' to clear" if name == "set-challenger" else ""))
        _why_who(p)
        if name == "promote":
            _allow(p)
        p.set_defaults(handler=run_alias, action=name)

    p = sub.add_parser("rollback", help="give the champion alias back to the previous champion (admin)")
    _why_who(p)
    _allow(p)
    p.set_defaults(handler=run_alias, action="rollback", version=None)


def _allow(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-vocabulary-change", action="store_true",
                   help="move the champion even if the new one cannot name foods the current one named in recent "
                        "traffic (recorded in the alias history)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _why_who(p: argparse.ArgumentParser) -> None:
    p.add_argument("--why", required=True, help="the reason, recorded in the alias history")
    p.add_argument("--who", default=None, help="recorded as the person who did it (default: your login)")
    _common(p)


class _StageBars:
    """One progress bar at a time (rich allows a single live display): a stage's bar opens
    on its first update and closes when the next stage starts."""

    def __init__(self):
        from contextlib import ExitStack

        self._stack, self._name, self._update = ExitStack(), None, None

    def stage(self, name: str):
        def update(done: int, total: int) -> None:
            from nutrilearn.cli.progress import progress_bar

            if self._name != name:
                self._stack.close()
                self._name, self._update = name, self._stack.enter_context(progress_bar(name, total))
            self._update(done, total)

        return update

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()


def _token() -> str | None:
    return os.environ.get("NUTRILEARN_ADMIN_TOKEN") or None


def _print(obj: dict, as_json: bool, text: str) -> None:
    print(json.dumps(obj, default=str) if as_json else text, flush=True)


def _resolve_version(reg, version: str) -> str:
    from nutrilearn.registry.store import ALIASES, RegistryError

    if version in ALIASES:
        resolved = reg.alias_version(version)
        if resolved is None:
            raise RegistryError(f"no version has the alias {version!r}")
        return resolved
    return version


def run_train(args: argparse.Namespace) -> int:
    from nutrilearn.config import Settings
    from nutrilearn.registry.features import DataError
    from nutrilearn.registry.jobs import Progresses, train_version
    from nutrilearn.registry.training import TrainConfig
    from nutrilearn.serving import load_classifier

    overrides = {k: v for k, v in (("max_epochs", args.max_epochs), ("l2", args.l2), ("seed", args.seed)) if v is not None}
    if args.flip:
        overrides["flip_augment"] = True
    settings = Settings.from_env()
    try:
        classifier = load_classifier(dataclasses.replace(settings, runtime="keras"))  # training, evaluation: Keras
        with _StageBars() as bars:
            out = train_version(settings, args.data, classifier, base=args.base, eval_data=args.eval_data,
                                config=TrainConfig(**overrides), promote_if_better=args.promote_if_better,
                                token=_token(), allow_vocabulary_change=args.allow_vocabulary_change, progress=Progresses(bars.stage("features"), bars.stage("training (epochs)")))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = (f"registered version {out['version']}: accuracy {percent(out['accuracy'])}, macro F1 {out['f1_macro']:.3f}, "
            f"top-5 {percent(out['top5_accuracy'])}, ECE {out['ece']:.3f} on {out['eval_data']}\n"
            f"trained on {out['photos']} photos in {out['training_seconds']:.1f} s (best epoch {out['best_epoch']})")
    if "promotion" in out:
        text += "\n" + out["promotion"]
    _print(out, args.json, text)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from nutrilearn.cli.progress import progress_bar
    from nutrilearn.config import Settings
    from nutrilearn.registry.features import DataError
    from nutrilearn.registry.jobs import evaluate_version
    from nutrilearn.registry.store import Registry, RegistryError
    from nutrilearn.serving import load_classifier
    from nutrilearn.registry.views import PERCENT_METRICS

    settings = Settings.from_env()
    reg = Registry(settings)
    try:
        version = _resolve_version(reg, args.version)
        reg.version(version)
        classifier = load_classifier(dataclasses.replace(settings, runtime="keras"))  # training, evaluation: Keras
        with progress_bar("features") as update:
            out = evaluate_version(settings, version, args.data, classifier, update, reg)
    except (DataError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    lines = [f"version {out['version']} on {out['eval_data']}",
             f"  coverage            {percent(out['coverage'])} (share of photos whose true label this version can produce)"]
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
                "f1_weighted", "top5_accuracy", "log_loss", "ece"):
        lines.append(f"  {key:<19} {percent(out[key]) if key in PERCENT_METRICS else f'{out[key]:.4f}'}")
    lines.append(f"  {'label':<24} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>5}")
    for row in out["per_class"]:
        lines.append(f"  {row['label']:<24} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} {row['support']:>5}")
    _print(out, args.json, "\n".join(lines))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from nutrilearn.cli.progress import progress_bar
    from nutrilearn.config import Settings
    from nutrilearn.registry.features import DataError
    from nutrilearn.registry.jobs import compare_versions
    from nutrilearn.registry.store import Registry, RegistryError
    from nutrilearn.serving import load_classifier

    settings = Settings.from_env()
    reg = Registry(settings)
    try:
        versions = [_resolve_version(reg, v) for v in (args.a, args.b)]
        for v in versions:
            reg.version(v)
        classifier = load_classifier(settings)
        with progress_bar("features") as update:
            out = compare_versions(settings, versions, args.data, classifier, update, reg)
    except (DataError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    fmt = lambda x: "-" if x != x else f"{x:.3f}"  # noqa: E731
    lines = [f"{out['n']} photos in {out['data']}; labels both versions can produce: "
             f"{len(out['common_labels'])} ({out['common_photos']} photos)"]
    for v in out["versions"]:
        o, c = v["overall"], v["common"]
        lines.append(f"  version {v['version']}: knows {len(v['classes'])} foods, coverage {percent(v['coverage'])}; "
                     f"overall accuracy {percent(o['accuracy'])} F1 {fmt(o['f1_macro'])}; "
                     f"common labels accuracy {percent(c['accuracy'])} F1 {fmt(c['f1_macro'])}")
    _print(out, args.json, "\n".join(lines))
    return 0


def run_versions(args: argparse.Namespace) -> int:
    from nutrilearn.config import Settings
    from nutrilearn.registry.store import Registry

    reg = Registry(Settings.from_env())
    if args.history:
        events = [e.as_row() for e in reg.history()]
        text = "\n".join(f"{e['when']:%Y-%m-%d %H:%M:%S}  {e['alias']:<10} {e['action']:<16} {e['from'] or '-':>3} -> "
                         f"{e['to'] or '-':<3} {e['who']}: {e['why']}" for e in events) or "no alias moves yet"
        _print({"history": events}, args.json, text)
        return 0
    rows = []
    for v in reg.versions():
        m = v.metrics
        rows.append({"version": v.version, "classes": list(reg.vocabulary(v.version)),
                     "created": v.created.isoformat(timespec="seconds"), "aliases": list(v.aliases),
                     "training_data": v.tags.get("nutrilearn.training_data", ""), "eval_data": v.tags.get("eval.data", ""),
                     **{k: m.get(k) for k in ("accuracy", "f1_macro", "top5_accuracy", "ece", "coverage")}})
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    text = "\n".join(f"v{r['version']:<4} {','.join(r['aliases']) or '-':<20} {len(r['classes']):>3} foods  "
                     f"acc {percent(r['accuracy'])}  F1 {fmt(r['f1_macro'])}"
                     f"  top5 {percent(r['top5_accuracy'])}  ECE {fmt(r['ece'])}  {r['training_data']}" for r in rows)
    _print({"versions": rows}, args.json, text or "no versions registered yet (run: nutrilearn setup)")
    return 0


def run_alias(args: argparse.Namespace) -> int:
    from nutrilearn.config import Settings
    from nutrilearn.registry import admin
    from nutrilearn.registry.jobs import default_user
    from nutrilearn.registry.store import Registry, RegistryError

    settings = Settings.from_env()
    who = args.who or default_user()
    try:
        reg = Registry(settings)
        allow = bool(getattr(args, "allow_vocabulary_change", False))
        if args.action == "promote":
            event = admin.promote(settings, _resolve_version(reg, args.version), _token(), who, args.why, reg,
                                  allow_vocabulary_change=allow)
        elif args.action == "set-challenger":
            version = None if args.version.lower() == "none" else args.version
            event = admin.set_challenger(settings, version, _token(), who, args.why, reg)
        else:
            event = admin.rollback(settings, _token(), who, args.why, reg, allow_vocabulary_change=allow)
    except admin.NotAuthorised as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except admin.VocabularyChange as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_VOCABULARY
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    row = event.as_row()
    text = f"{row['alias']}: {row['from'] or '-'} -> {row['to'] or '-'} ({row['action']} by {row['who']})"
    if row.get("vocabulary"):
        text += f"\nvocabulary change {row['vocabulary']}"
    _print(row, args.json, text)
    return 0
