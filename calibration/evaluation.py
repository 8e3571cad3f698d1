"""How well labels match the truth, with and without the fear/disgust enhancement.

'Without' is always the argmax of the model's raw scores. Two sources of
truth: resolved review items (what the product reported against what a person
decided; note these are the doubtful segments only, so the numbers are lower
than on ordinary traffic), and a labelled manifest scored and enhanced afresh
with the calibration under test.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, confusion_matrix, precision_recall_fscore_support
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.enhance import PAIR, Centroids, enhance
from calibration.centroids import score_manifest
from config import Settings
from models import EMOTION_LABELS, ReviewItem, ReviewStatus

if TYPE_CHECKING:  # torch is imported only where a manifest is scored
    from analysis.engine import EmotionEngine

LABELS = list(EMOTION_LABELS)


class NothingToEvaluate(ValueError):
    pass


def _accuracy(truth: np.ndarray, predicted: np.ndarray) -> float | None:
    return float(accuracy_score(truth, predicted)) if len(truth) else None


def _label_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict:
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=LABELS, zero_division=0)
    return {
        "accuracy": _accuracy(truth, predicted),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(LABELS, precision, recall, f1, support)
        },
        # Rows are the true class, columns the predicted one.
        "confusion": confusion_matrix(truth, predicted, labels=LABELS).tolist(),
    }


def evaluate(
    y_true: Sequence[str],
    raw_scores: np.ndarray,
    enhanced_labels: Sequence[str],
    flags_per_item: Sequence[Collection[str]],
    review_flags: Collection[str],
) -> dict:
    """A JSON-ready report; ``raw_scores`` is (N, 9) in EMOTION_LABELS order."""
    n = len(y_true)
    if n == 0:
        raise NothingToEvaluate("nothing to evaluate: no labelled items")
    raw_scores = np.asarray(raw_scores, dtype=np.float64)
    if raw_scores.shape != (n, len(LABELS)) or len(enhanced_labels) != n or len(flags_per_item) != n:
        raise ValueError(f"{n} true labels need (N, 9) raw scores, N enhanced labels and N flag lists")
    truth = np.asarray(y_true)
    raw = np.asarray(LABELS)[raw_scores.argmax(axis=1)]
    enhanced = np.asarray(enhanced_labels)
    pair = np.isin(truth, PAIR)
    changed = raw != enhanced
    right = enhanced == truth
    review = frozenset(review_flags)
    return {
        "n": n,
        "labels": LABELS,
        "raw": _label_metrics(truth, raw),
        "enhanced": _label_metrics(truth, enhanced),
        # Over items that truly are fearful or disgusted; any other prediction counts as wrong.
        "fear_vs_disgust": {
            "n": int(pair.sum()),
            "raw_accuracy": _accuracy(truth[pair], raw[pair]),
            "enhanced_accuracy": _accuracy(truth[pair], enhanced[pair]),
        },
        "review_rate": float(np.mean([bool(review.intersection(flags)) for flags in flags_per_item])),
        "changes": {
            "changed": int(changed.sum()),
            "changed_and_right": int((changed & right).sum()),
            "changed_and_wrong": int((changed & ~right).sum()),
        },
    }


def confusion_png(matrix: Sequence[Sequence[int]], path: Path, *, title: str = "Confusion matrix") -> None:
    # A figure of its own on the Agg canvas: no pyplot state shared with the rest of the process.
    figure = Figure(figsize=(8, 7))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=LABELS).plot(
        ax=axes, cmap="Blues", values_format="d", xticks_rotation=45, colorbar=False
    )
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, format="png")


def evaluate_reviewed(session: Session, review_flags: Collection[str]) -> dict:
    """Resolved review items: raw = the model's scores, enhanced = the label the
    product reported. Flags are all the segment's flags where recorded (the
    reasons are only those that were review flags at the time), so another
    review-flag set can be tried on the same items."""
    label = ReviewItem.final_labels[1]  # the final (first) label
    items = session.execute(
        select(
            label.label("label"),
            ReviewItem.model_scores,
            ReviewItem.model_label,
            ReviewItem.reasons,
            ReviewItem.reason_details,
        )
        .where(ReviewItem.status == ReviewStatus.resolved.value, label.is_not(None))
        .order_by(ReviewItem.resolved_at, ReviewItem.id)
    ).all()
    return evaluate(
        [i.label for i in items],
        np.array([[i.model_scores[label] for label in LABELS] for i in items]).reshape(len(items), len(LABELS)),
        [i.model_label for i in items],
        [i.reason_details.get("flags", i.reasons) for i in items],
        review_flags,
    )


def evaluate_manifest(
    path: Path,
    engine: EmotionEngine,
    centroids: Centroids | None,
    settings: Settings,
) -> dict:
    """Scores each labelled file and re-decides it with ``centroids``. Only the
    enhancement's flags exist here (no segment quality checks), so the review
    rate counts those alone."""
    scored = score_manifest(path, engine, settings)
    decisions = [enhance(s, e, centroids, settings.enhancement) for s, e in zip(scored.scores, scored.embeddings)]
    # Each file is held to its own domain's review flags, as the worker does;
    # what remains are the reasons it would be queued for.
    reasons = [
        [f for f in decision.flags if f in settings.review.flags_for(domain)]
        for decision, domain in zip(decisions, scored.domains)
    ]
    return evaluate(
        scored.labels,
        scored.scores,
        [d.label for d in decisions],
        reasons,
        frozenset().union(*reasons),
    )
