"""Fear/disgust calibration: class centroids learned from labelled embeddings.

Labelled embeddings come from review items a person resolved, and optionally
from a manifest of labelled recordings scored with the current model. A build
yields unit-length centroids (fear and disgust always, every other class with
enough examples) and the softmax temperature that ``analysis.enhance`` uses to
turn cosine similarities into a fear-vs-disgust probability. Builds are
versioned: the arrays go to S3, a ``calibrations`` row records them, and one
version at a time is active; workers read the active one on every job.

Why nearest class mean rather than k-means: resolved review labels are clean
(a person listened and decided), so each class mean is already the best
estimate of its centroid and there is nothing for clustering to repair.
KMeans with k=2 seeded at the labelled means re-assigns examples by geometry;
that helps when labels are noisy, but here it would overrule correct human
labels on exactly the overlapping recordings the enhancement exists for.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestCentroid
from sklearn.preprocessing import normalize
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from analysis.audio import AudioError
from analysis.enhance import PAIR, Centroids
from analysis.pipeline import decode_recording
from config import Settings
from models import EMOTION_LABELS, Calibration, Result, ReviewItem, ReviewStatus
from models.db import transaction
from storage import ObjectStore

if TYPE_CHECKING:  # torch is imported only where a manifest is scored
    from analysis.engine import EmotionEngine

METHOD = "nearest_centroid"
HELDOUT_SHARE = 0.25
TEMPERATURE_BOUNDS = (0.02, 2.0)
# One of each class is held out and NearestCentroid needs two of each to fit.
MIN_PER_CLASS_FLOOR = 3


class CalibrationRefused(Exception):
    """Too little labelled data; nothing is saved and the active version stays."""


class CalibrationNotFound(LookupError):
    pass


class ManifestError(ValueError):
    """A manifest row that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class LabelledSet:
    embeddings: np.ndarray  # (N, D) float32
    labels: list[str]
    domains: list[str | None]

    def __add__(self, other: LabelledSet) -> LabelledSet:
        if not other.labels:
            return self
        if not self.labels:
            return other
        return LabelledSet(
            _stack([*self.embeddings, *other.embeddings]), self.labels + other.labels, self.domains + other.domains
        )


@dataclass(frozen=True)
class ScoredManifest:
    labels: list[str]
    domains: list[str | None]
    scores: np.ndarray  # (N, 9) the model's raw probabilities, EMOTION_LABELS order
    embeddings: np.ndarray  # (N, D)


@dataclass(frozen=True)
class CalibrationBuild:
    centroids: Centroids
    counts: dict[str, int]  # labelled examples per class, including classes too rare for a centroid
    method: str
    heldout_accuracy: float
    details: dict = field(default_factory=dict)

    @property
    def temperature(self) -> float:
        return self.centroids.temperature


def _stack(vectors: list) -> np.ndarray:
    dims = {len(v) for v in vectors}
    if len(dims) > 1:
        raise ValueError(f"embeddings of different sizes {sorted(dims)}: they come from different models")
    return np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dims.pop() if dims else 0)


def labelled_from_reviews(session: Session, domain: str | None = None, *, model_id: str | None = None) -> LabelledSet:
    """Resolved review items with their final (first) label, oldest first (a
    fixed order keeps seeded splits reproducible). Resolved means single-reviewed,
    agreed by two reviewers, adjudicated or corrected: an item still waiting for a
    second reviewer or for adjudication teaches nothing. ``model_id`` keeps
    embeddings of one model only: another model's embedding space would make
    the centroids meaningless."""
    label = ReviewItem.final_labels[1]  # PostgreSQL arrays count from 1
    query = (
        select(ReviewItem.embedding, label.label("label"), ReviewItem.domain)
        .where(ReviewItem.status == ReviewStatus.resolved.value, label.is_not(None))
        .order_by(ReviewItem.resolved_at, ReviewItem.id)
    )
    if domain is not None:
        query = query.where(ReviewItem.domain == domain)
    if model_id is not None:
        query = query.join(Result, Result.id == ReviewItem.result_id).where(Result.model_id == model_id)
    rows = session.execute(query).all()
    return LabelledSet(_stack([r.embedding for r in rows]), [r.label for r in rows], [r.domain for r in rows])


@dataclass(frozen=True)
class _ManifestRow:
    line: int
    path: Path
    label: str
    domain: str | None


def read_manifest(path: Path) -> list[_ManifestRow]:
    """CSV rows ``path,label[,domain]``; an optional header; relative paths are
    relative to the manifest."""
    path = Path(path)
    rows: list[_ManifestRow] = []
    with path.open(newline="") as fh:
        for line, fields in enumerate(csv.reader(fh), start=1):
            fields = [f.strip() for f in fields]
            if not any(fields):
                continue
            where = f"{path}:{line}"
            if not rows and len(fields) > 1 and fields[1].lower() == "label":
                continue
            if len(fields) not in (2, 3) or not fields[0]:
                raise ManifestError(f"{where}: expected 'path,label[,domain]', got {','.join(fields)!r}")
            label = fields[1].lower()
            if label not in EMOTION_LABELS:
                raise ManifestError(f"{where}: unknown label {fields[1]!r}; use one of {', '.join(EMOTION_LABELS)}")
            audio = path.parent / fields[0]
            if not audio.is_file():
                raise ManifestError(f"{where}: no such file {str(audio)!r}")
            rows.append(_ManifestRow(line, audio, label, (fields[2] or None) if len(fields) == 3 else None))
    if not rows:
        raise ManifestError(f"{path}: no rows")
    return rows


def score_manifest(path: Path, engine: EmotionEngine, settings: Settings) -> ScoredManifest:
    """Each file's first channel, scored whole: one labelled recording, one example."""
    rows = read_manifest(path)
    scores, embeddings = [], []
    for row in rows:
        try:
            audio = decode_recording(row.path, settings)
        except AudioError as exc:
            raise ManifestError(f"{path}:{row.line}: {row.path}: {exc}") from exc
        (scored,) = engine.score([audio.channels[0]])
        scores.append(scored.scores)
        embeddings.append(scored.embedding)
    return ScoredManifest(
        labels=[r.label for r in rows],
        domains=[r.domain for r in rows],
        scores=np.asarray(scores, dtype=np.float64),
        embeddings=_stack(embeddings),
    )


def labelled_from_manifest(path: Path, engine: EmotionEngine, settings: Settings) -> LabelledSet:
    scored = score_manifest(path, engine, settings)
    return LabelledSet(scored.embeddings, scored.labels, scored.domains)


def _pair_similarities(x: np.ndarray, pair_centroids: np.ndarray) -> np.ndarray:
    """Cosine similarity of unit rows to the fear and disgust centroids, as
    ``analysis.enhance.similarity_probability`` computes it."""
    return x @ normalize(pair_centroids).T


def _nll(similarities: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    log_p = log_softmax(similarities / temperature, axis=1)
    return float(-log_p[np.arange(len(targets)), targets].mean())


def _fit_pair(x: np.ndarray, targets: np.ndarray, seed: int) -> tuple[float, float, dict]:
    """Held-out accuracy of the fear/disgust decision by centroid similarity,
    and the softmax temperature. ``targets`` index PAIR."""
    # At least one of each class is held out, however small the set.
    heldout = max(math.ceil(HELDOUT_SHARE * len(targets)), len(PAIR))
    x_train, x_test, t_train, t_test = train_test_split(
        x, targets, test_size=heldout, stratify=targets, random_state=seed
    )
    centroids = NearestCentroid().fit(x_train, t_train).centroids_  # rows in PAIR order
    # Decided by cosine, not NearestCentroid.predict's Euclidean distance,
    # because cosine is what the enhancement uses.
    train_sims, test_sims = _pair_similarities(x_train, centroids), _pair_similarities(x_test, centroids)
    accuracy = float(accuracy_score(t_test, test_sims.argmax(axis=1)))
    # Fitted on the held-out part: similarities to centroids that did not see
    # those items, as new calls will be. Fitted on the training part, a separable
    # set drives the temperature to its floor and lets centroids overrule the model.
    fit = minimize_scalar(lambda t: _nll(test_sims, t_test, t), bounds=TEMPERATURE_BOUNDS, method="bounded")
    temperature = float(fit.x)
    details = {
        "split": {"train": len(t_train), "heldout": len(t_test)},
        "train_nll": _nll(train_sims, t_train, temperature),
        "heldout_nll": float(fit.fun),
    }
    return accuracy, temperature, details


def build_calibration(data: LabelledSet, *, min_per_class: int, seed: int = 0) -> CalibrationBuild:
    if min_per_class < MIN_PER_CLASS_FLOOR:
        raise ValueError(f"min_per_class must be at least {MIN_PER_CLASS_FLOOR}")
    counts = Counter(data.labels)
    if any(counts[label] < min_per_class for label in PAIR):
        have = ", ".join(f"{label}={counts[label]}" for label in PAIR)
        raise CalibrationRefused(
            f"need at least {min_per_class} labelled examples each of fearful and disgusted; have {have}"
        )

    x = normalize(data.embeddings)
    y = np.asarray(data.labels)
    in_pair = np.isin(y, PAIR)
    targets = np.array([PAIR.index(label) for label in y[in_pair]])
    heldout_accuracy, temperature, fit_details = _fit_pair(x[in_pair], targets, seed)

    kept = np.isin(y, [label for label, n in counts.items() if n >= min_per_class])
    final = NearestCentroid().fit(x[kept], y[kept])
    centroids = Centroids(
        labels=tuple(str(label) for label in final.classes_),
        # Unit length: the enhancement only uses a centroid's direction.
        vectors=normalize(final.centroids_).astype(np.float32),
        temperature=temperature,
        source="calibration",
    )
    return CalibrationBuild(
        centroids=centroids,
        counts=dict(sorted(counts.items())),
        method=METHOD,
        heldout_accuracy=heldout_accuracy,
        details={
            "seed": seed,
            "min_per_class": min_per_class,
            "embedding_dim": int(x.shape[1]),
            **fit_details,
            "domains": dict(Counter(d or "unspecified" for d in data.domains)),
        },
    )


def object_key(version: int) -> str:
    return f"calibrations/v{version}.npz"


def save_calibration(
    sessions: sessionmaker[Session], store: ObjectStore, build: CalibrationBuild, model_id: str
) -> int:
    """Store the arrays, then commit the row; returns the new (inactive) version.
    The version is drawn first so the object key can name it; a failed upload
    rolls the transaction back and leaves no row pointing at a missing object."""
    with transaction(sessions) as session:
        sequence = func.pg_get_serial_sequence(Calibration.__tablename__, "version")
        version = int(session.execute(select(func.nextval(sequence))).scalar_one())
        key = object_key(version)
        store.put_bytes(key, build.centroids.to_npz_bytes())
        session.add(
            Calibration(
                version=version,
                model_id=model_id,
                method=build.method,
                object_key=key,
                counts=build.counts,
                temperature=build.temperature,
                heldout_accuracy=build.heldout_accuracy,
                details={**build.details, "labels": list(build.centroids.labels)},
                active=False,
            )
        )
    return version


def activate(sessions: sessionmaker[Session], version: int) -> None:
    """Make ``version`` the one active calibration; workers pick it up on their next job."""
    with transaction(sessions) as session:
        if session.get(Calibration, version) is None:
            raise CalibrationNotFound(f"no calibration version {version}")
        # The others first: the partial unique index allows one active row at any moment.
        others = update(Calibration).where(Calibration.active, Calibration.version != version)
        session.execute(others.values(active=False))
        session.execute(update(Calibration).where(Calibration.version == version).values(active=True))


def list_calibrations(session: Session) -> list[Calibration]:
    return list(session.scalars(select(Calibration).order_by(Calibration.version)))
