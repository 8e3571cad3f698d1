"""How the review queue is doing, for supervisors: the backlog by reason,
decisions per reviewer per day, the time from claim to decision, agreement
between two reviewers of one item, and the model against the final human answer.

Agreement is measured on the first labels of the two review decisions of a
double-reviewed item (each round separately): raw agreement, Cohen's kappa
over the 9 labels, and per label the specific agreement (2·both / (first +
second)) and the one-against-the-rest kappa. Kappa is None where it is
undefined (both reviewers always used one label)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, cast, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.types import Date

from analysis.labels import EMOTION_LABELS
from domain.review_queue import claimable
from models import ApiKey, DecisionKind, ReviewDecision, ReviewItem, ReviewStatus


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """(observed − chance agreement) / (1 − chance agreement); None when chance agreement is 1."""
    n = len(first)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second)) / n
    a_counts, b_counts = Counter(first), Counter(second)
    chance = sum(a_counts[label] * b_counts[label] for label in a_counts) / (n * n)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


def agreement(pairs: Sequence[tuple[str, str]]) -> dict:
    first = [a for a, _ in pairs]
    second = [b for _, b in pairs]
    per_label = {}
    for label in EMOTION_LABELS:
        a = [x == label for x in first]
        b = [y == label for y in second]
        named = sum(a) + sum(b)
        if not named:
            continue
        both = sum(x and y for x, y in zip(a, b))
        per_label[label] = {
            "named": named,
            "specific_agreement": round(2 * both / named, 4),
            "kappa": _rounded(cohen_kappa([str(x) for x in a], [str(y) for y in b])),
        }
    return {
        "pairs": len(pairs),
        "raw": round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else None,
        "kappa": _rounded(cohen_kappa(first, second)),
        "per_label": per_label,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _between(
    column: ColumnElement | InstrumentedAttribute, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


def backlog(session: Session, at: datetime) -> dict[str, dict[str, int]]:
    """Open items per reason: waiting (an expired lease waits again), claimed, disagreement."""
    found: dict[str, dict[str, int]] = {}
    queries: list[tuple[str, Select]] = [
        ("waiting", select(ReviewItem.reasons).where(claimable(at))),
        (
            "claimed",
            select(ReviewItem.reasons).where(
                ReviewItem.status == ReviewStatus.claimed.value, ReviewItem.lease_expires_at >= at
            ),
        ),
        ("disagreement", select(ReviewItem.reasons).where(ReviewItem.status == ReviewStatus.disagreement.value)),
    ]
    for name, query in queries:
        inner = query.subquery()
        rows = session.execute(
            select(func.unnest(inner.c.reasons).label("reason"), func.count()).group_by("reason").order_by("reason")
        ).all()
        for reason, n in rows:
            found.setdefault(reason, {"waiting": 0, "claimed": 0, "disagreement": 0})[name] = n
    return found


def cleared(session: Session, since: datetime | None, until: datetime | None) -> list[dict]:
    """Decisions (reviews, adjudications, corrections) per reviewer per UTC day."""
    day = cast(func.timezone("UTC", ReviewDecision.decided_at), Date).label("day")
    rows = session.execute(
        select(ApiKey.name, day, func.count())
        .join(ApiKey, ApiKey.id == ReviewDecision.reviewer_id)
        .where(*_between(ReviewDecision.decided_at, since, until))
        .group_by(ApiKey.name, day)
        .order_by(day, ApiKey.name)
    ).all()
    return [{"reviewer": name, "day": d.isoformat(), "decisions": n} for name, d, n in rows]


def time_to_decision(session: Session, since: datetime | None, until: datetime | None) -> dict:
    """Claim to decision of review decisions, in seconds."""
    seconds = func.extract("epoch", ReviewDecision.decided_at - ReviewDecision.claimed_at)
    count, median = session.execute(
        select(func.count(), func.percentile_cont(0.5).within_group(seconds)).where(
            ReviewDecision.kind == DecisionKind.review.value,
            ReviewDecision.claimed_at.is_not(None),
            *_between(ReviewDecision.decided_at, since, until),
        )
    ).one()
    return {"decisions": count, "median_seconds": None if median is None else round(float(median), 3)}


def double_review_pairs(session: Session, since: datetime | None, until: datetime | None) -> list[tuple[str, str]]:
    rows = session.execute(
        select(ReviewDecision.item_id, ReviewDecision.round, ReviewDecision.labels)
        .where(ReviewDecision.kind == DecisionKind.review.value, *_between(ReviewDecision.decided_at, since, until))
        .order_by(ReviewDecision.item_id, ReviewDecision.round, ReviewDecision.decided_at, ReviewDecision.id)
    ).all()
    firsts: dict[tuple, list[str]] = {}
    for item_id, round_, labels in rows:
        firsts.setdefault((item_id, round_), []).append(labels[0])
    return [(labels[0], labels[1]) for labels in firsts.values() if len(labels) >= 2]


def model_vs_human(session: Session, since: datetime | None, until: datetime | None) -> dict:
    """Rows: the label the product reported; columns: the final human (first) label."""
    rows = session.execute(
        select(ReviewItem.model_label, ReviewItem.final_labels[1].label("human"), func.count())
        .where(ReviewItem.status == ReviewStatus.resolved.value, *_between(ReviewItem.resolved_at, since, until))
        .group_by(ReviewItem.model_label, "human")
    ).all()
    index = {label: i for i, label in enumerate(EMOTION_LABELS)}
    matrix = [[0] * len(EMOTION_LABELS) for _ in EMOTION_LABELS]
    for model, human, n in rows:
        if model in index and human in index:
            matrix[index[model]][index[human]] += n
    total = sum(map(sum, matrix))
    same = sum(matrix[i][i] for i in range(len(EMOTION_LABELS)))
    return {
        "labels": list(EMOTION_LABELS),
        "matrix": matrix,
        "items": total,
        "model_agrees": round(same / total, 4) if total else None,
    }


def review_stats(session: Session, at: datetime, since: datetime | None, until: datetime | None) -> dict:
    return {
        "at": at.isoformat(),
        "since": since and since.isoformat(),
        "until": until and until.isoformat(),
        "backlog": backlog(session, at),
        "cleared": cleared(session, since, until),
        "time_to_decision": time_to_decision(session, since, until),
        "agreement": agreement(double_review_pairs(session, since, until)),
        "model_vs_human": model_vs_human(session, since, until),
    }
