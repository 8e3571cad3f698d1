"""emoq: the operators' commands (calibration, evaluation, API keys) and the
bulk client's (submit, status, results, cancel).

    emoq calibrate [--manifest CSV] [--domain D] [--min-per-class N] [--activate]
    emoq activate VERSION
    emoq calibrations
    emoq evaluate (--manifest CSV | --reviewed) [--out DIR]
    emoq profile DOMAIN [--min-items N] [--activate]
    emoq activate-profile VERSION
    emoq create-key --name NAME --role submitter|reviewer|admin

    emoq submit PATH... --batch NAME [...]   (emoq submit --help)
    emoq status BATCH | results BATCH | cancel BATCH

Operator commands exit 0 when done, 1 on an error, 2 when a calibration is
refused; the client's, 0 when all went through, 1 when some were refused, 2
on a usage or connection error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from analysis.engine import EmotionEngine, ModelUnavailable, resolve_model_source
from calibration.centroids import (
    MIN_PER_CLASS_FLOOR,
    CalibrationNotFound,
    CalibrationRefused,
    ManifestError,
    activate,
    build_calibration,
    labelled_from_manifest,
    labelled_from_reviews,
    list_calibrations,
    save_calibration,
)
from calibration.evaluation import NothingToEvaluate, confusion_png, evaluate_manifest, evaluate_reviewed
from calibration.profiles import ProfileRefused, activate_profile, build_profile
from client import cli as client_cli
from config import Settings, load_settings
from domain.api_keys import create_key
from models import Role
from models.db import make_engine, make_session_factory, transaction
from storage import ObjectStore
from worker.context import WorkerContext

Sessions = sessionmaker[Session]


def _loaded_worker(settings: Settings, sessions: Sessions) -> tuple[WorkerContext, EmotionEngine]:
    # The worker's own loading, so manifest embeddings live in the same space as the jobs' embeddings.
    ctx = WorkerContext(settings, sessions, ObjectStore(settings.storage))
    ctx.load_model()
    if ctx.engine is None:
        raise ModelUnavailable(ctx.model_error or f"could not load model {settings.engine.model!r}")
    return ctx, ctx.engine


def _calibrate(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    # The id the worker records with each result; reviews from another model are left out.
    model_id, _ = resolve_model_source(settings.engine.model)
    with sessions() as session:
        data = labelled_from_reviews(session, args.domain, model_id=model_id)
    if args.manifest:
        data = data + labelled_from_manifest(args.manifest, _loaded_worker(settings, sessions)[1], settings)
    build = build_calibration(data, min_per_class=args.min_per_class)
    version = save_calibration(sessions, ObjectStore(settings.storage), build, model_id)
    if args.activate:
        activate(sessions, version)
    print(f"calibration version {version} ({build.method}, {'active' if args.activate else 'not active'})")
    print("  counts: " + ", ".join(f"{label}={n}" for label, n in build.counts.items()))
    print(f"  centroids: {', '.join(build.centroids.labels)}")
    print(f"  held-out fear/disgust accuracy: {build.heldout_accuracy:.3f} (n={build.details['split']['heldout']})")
    print(f"  temperature: {build.temperature:.4f}")
    if not args.activate:
        print(f"  activate with: emoq activate {version}")
    return 0


def _activate(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    activate(sessions, args.version)
    print(f"calibration version {args.version} is active; workers use it from their next job")
    return 0


def _calibrations(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    with sessions() as session:
        rows = list_calibrations(session)
    if not rows:
        print("no calibrations")
    for row in rows:
        accuracy = "-" if row.heldout_accuracy is None else f"{row.heldout_accuracy:.3f}"
        counts = ", ".join(f"{label}={n}" for label, n in row.counts.items())
        print(
            f"{'*' if row.active else ' '} v{row.version}  {row.created_at:%Y-%m-%d %H:%M}  {row.method}  "
            f"T={row.temperature:.4f}  held-out={accuracy}  {counts}  model={row.model_id}"
        )
    return 0


def _profile(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    with transaction(sessions) as session:
        profile = build_profile(session, args.domain, min_items=args.min_items)
        version, shift, items = profile.version, profile.prior_shift, profile.items
    if args.activate:
        activate_profile(sessions, version)
    print(
        f"domain profile {args.domain!r} version {version} from {items} reviewed items "
        f"({'active' if args.activate else f'not active; activate with: emoq activate-profile {version}'})"
    )
    print("  prior shift: " + ", ".join(f"{label}={value:+.2f}" for label, value in shift.items()))
    return 0


def _activate_profile(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    profile = activate_profile(sessions, args.version)
    print(f"domain profile version {args.version} is active for {profile.domain!r}; workers use it from their next job")
    return 0


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def summary(report: dict) -> str:
    raw, enhanced, fd, changes = report["raw"], report["enhanced"], report["fear_vs_disgust"], report["changes"]
    lines = [
        f"items: {report['n']}",
        f"accuracy: {_percent(raw['accuracy'])} raw -> {_percent(enhanced['accuracy'])} enhanced",
        f"fear vs disgust (n={fd['n']}): {_percent(fd['raw_accuracy'])} raw -> "
        f"{_percent(fd['enhanced_accuracy'])} enhanced",
        f"review rate: {_percent(report['review_rate'])}",
        f"changed decisions: {changes['changed']} ({changes['changed_and_right']} right, "
        f"{changes['changed_and_wrong']} wrong)",
        f"{'class':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}   (enhanced)",
    ]
    for label, m in enhanced["per_class"].items():
        lines.append(f"{label:<10} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f} {m['support']:>7}")
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    if args.reviewed:
        with sessions() as session:
            report = {"source": "reviewed", **evaluate_reviewed(session, settings.review.flags_for(None))}
    else:
        ctx, engine = _loaded_worker(settings, sessions)
        centroids = ctx.centroids()
        report = {
            "source": str(args.manifest),
            "calibration_version": centroids.version if centroids else None,
            **evaluate_manifest(args.manifest, engine, centroids, settings),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluation.json").write_text(json.dumps(report, indent=2))
    confusion_png(report["enhanced"]["confusion"], args.out / "confusion.png", title="Enhanced labels")
    print(summary(report))
    print(f"wrote {args.out / 'evaluation.json'} and {args.out / 'confusion.png'}")
    return 0


def _create_key(args: argparse.Namespace, settings: Settings, sessions: Sessions) -> int:
    with transaction(sessions) as session:
        key, value = create_key(session, args.name, Role(args.role))
    print(value)
    print(f"API key {key.id} ({args.role}) for {args.name!r}: shown only once, store it now", file=sys.stderr)
    return 0


def _min_per_class(text: str) -> int:
    value = int(text)
    if value < MIN_PER_CLASS_FLOOR:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_PER_CLASS_FLOOR}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emoq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    calibrate = commands.add_parser("calibrate", help="build a calibration from resolved reviews (+ a manifest)")
    calibrate.add_argument("--manifest", type=Path, help="CSV of path,label[,domain] rows scored with the model")
    calibrate.add_argument("--domain", help="use only review items of this domain")
    calibrate.add_argument(
        "--min-per-class", type=_min_per_class, default=20, help="examples a class needs (default 20)"
    )
    calibrate.add_argument("--activate", action="store_true", help="make the new version active")
    calibrate.set_defaults(run=_calibrate)

    activate_cmd = commands.add_parser("activate", help="make a calibration version the active one")
    activate_cmd.add_argument("version", type=int)
    activate_cmd.set_defaults(run=_activate)

    commands.add_parser("calibrations", help="list calibration versions (* = active)").set_defaults(run=_calibrations)

    evaluate = commands.add_parser("evaluate", help="accuracy with and without the enhancement")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--manifest", type=Path, help="CSV of labelled recordings, enhanced with the active calibration"
    )
    source.add_argument("--reviewed", action="store_true", help="resolved review items against what was reported")
    evaluate.add_argument("--out", type=Path, default=Path("."), help="folder for evaluation.json and confusion.png")
    evaluate.set_defaults(run=_evaluate)

    profile = commands.add_parser("profile", help="build a domain profile from the domain's resolved reviews")
    profile.add_argument("domain")
    profile.add_argument("--min-items", type=int, default=50)
    profile.add_argument("--activate", action="store_true", help="make the new version the domain's active one")
    profile.set_defaults(run=_profile)

    activate_profile_cmd = commands.add_parser("activate-profile", help="make a domain profile version active")
    activate_profile_cmd.add_argument("version", type=int)
    activate_profile_cmd.set_defaults(run=_activate_profile)

    key = commands.add_parser("create-key", help="create an API key and print it once")
    key.add_argument("--name", required=True)
    key.add_argument("--role", required=True, choices=[r.value for r in Role])
    key.set_defaults(run=_create_key)

    client_cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if hasattr(args, "client"):  # the client needs no settings or database
        return client_cli.run(args)
    settings = load_settings()
    # One short-lived process: no connection pool to keep.
    engine = make_engine(settings.storage.database_url, pooled=False)
    try:
        return args.run(args, settings, make_session_factory(engine))
    except CalibrationRefused as exc:
        print(f"emoq: calibration refused: {exc}; the active calibration is unchanged", file=sys.stderr)
        return 2
    except (CalibrationNotFound, ManifestError, ModelUnavailable, NothingToEvaluate, ProfileRefused) as exc:
        print(f"emoq: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
