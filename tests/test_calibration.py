"""Calibration from labelled embeddings of known geometry, and its versions in
PostgreSQL and S3."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy import func, select

from analysis.enhance import Centroids, enhance
from calibration.centroids import (
    TEMPERATURE_BOUNDS,
    CalibrationNotFound,
    CalibrationRefused,
    LabelledSet,
    ManifestError,
    activate,
    build_calibration,
    labelled_from_reviews,
    list_calibrations,
    read_manifest,
    save_calibration,
)
from calibration.evaluation import evaluate
from config.settings import EnhancementSettings
from models import EMOTION_LABELS, Calibration, Job, Result, ReviewItem
from models.db import transaction
from tests.factories import key_id, make_review_item
from worker.context import WorkerContext

DIM = 16
_BASIS = np.linalg.qr(np.random.default_rng(42).standard_normal((DIM, DIM)))[0].T
# Fear and disgust 60° apart, so the clusters touch once noise is added.
MEANS = {
    "fearful": _BASIS[0],
    "disgusted": 0.5 * _BASIS[0] + np.sqrt(0.75) * _BASIS[1],
    "neutral": _BASIS[2],
    "happy": _BASIS[3],
}


@dataclass(frozen=True)
class Synthetic:
    embeddings: np.ndarray  # (N, DIM)
    labels: list[str]
    scores: np.ndarray  # (N, 9) raw model scores

    def labelled(self) -> LabelledSet:
        return LabelledSet(self.embeddings.astype(np.float32), self.labels, [None] * len(self.labels))

    def raw_labels(self) -> list[str]:
        return [EMOTION_LABELS[i] for i in self.scores.argmax(axis=1)]


def score_vector(**values: float) -> np.ndarray:
    out = np.array([values.get(label, 0.0) for label in EMOTION_LABELS])
    out[EMOTION_LABELS.index("other")] += 1.0 - out.sum()
    return out


def synthetic(counts: dict[str, int], seed: int, noise: float = 0.6) -> Synthetic:
    """Embeddings: 3 × the class mean plus Gaussian noise. Scores: fear and
    disgust share 0.85 and the true one gets only 53 % ± 5 % of it, so the raw
    argmax is often wrong but the pair stays within the re-decision margin;
    other classes are clearly on top."""
    rng = np.random.default_rng(seed)
    embeddings, labels, scores = [], [], []
    for label, n in counts.items():
        for _ in range(n):
            embeddings.append(3 * MEANS[label] + noise * rng.standard_normal(DIM))
            labels.append(label)
            if label in ("fearful", "disgusted"):
                other = "disgusted" if label == "fearful" else "fearful"
                share = float(np.clip(0.53 + 0.05 * rng.standard_normal(), 0, 1))
                scores.append(score_vector(**{label: 0.85 * share, other: 0.85 * (1 - share), "neutral": 0.15}))
            else:
                scores.append(score_vector(**{label: 0.7, "fearful": 0.1, "disgusted": 0.1}))
    return Synthetic(np.array(embeddings), labels, np.array(scores))


def insert_resolved(
    sessions,
    submitter: uuid.UUID,
    data: Synthetic,
    *,
    model_id: str = "test",
    domain: str | None = None,
    reported: list[str] | None = None,
    flags: list[list[str]] | None = None,
) -> None:
    """Resolved review items, one per example, under one job and result.
    ``reported`` is what the product said (default: the raw argmax)."""
    reported = reported or data.raw_labels()
    flags = flags or [["fear_disgust_ambiguous"]] * len(data.labels)
    with transaction(sessions) as session:
        job = Job(
            object_key="recordings/none", sha256="0" * 64, size_bytes=1, submitter_id=submitter, status="succeeded"
        )
        session.add(job)
        session.flush()
        result = Result(
            job_id=job.id,
            model_id=model_id,
            model_revision="test",
            model_random_weights=True,
            primary_label=reported[0],
            primary_confidence=0.5,
            scores={},
            embedding=[0.0] * DIM,
            embedding_dim=DIM,
            enhancement={},
            flags=[],
        )
        session.add(result)
        session.flush()
        for index, (embedding, label, scores) in enumerate(zip(data.embeddings, data.labels, data.scores)):
            session.add(
                ReviewItem(
                    job_id=job.id,
                    result_id=result.id,
                    segment_index=index,
                    domain=domain,
                    embedding=[float(x) for x in embedding],
                    model_scores={k: float(v) for k, v in zip(EMOTION_LABELS, scores)},
                    model_label=reported[index],
                    reasons=flags[index],
                    reason_details={"flags": flags[index]},
                    status="resolved",
                    final_labels=[label],
                    resolved_by=submitter,
                    resolved_at=func.now(),
                )
            )


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def build():
    data = synthetic({"fearful": 60, "disgusted": 60, "neutral": 30, "happy": 5}, seed=1)
    return build_calibration(data.labelled(), min_per_class=20)


def test_calibration_recovers_the_class_means(build):
    assert build.centroids.labels == ("disgusted", "fearful", "neutral")  # happy: 5 < 20, no centroid
    assert build.counts == {"disgusted": 60, "fearful": 60, "happy": 5, "neutral": 30}
    cosines = {label: cosine(build.centroids.vector(label), MEANS[label]) for label in build.centroids.labels}
    print(f"recovered-centroid cosine to the true means: {cosines}")
    assert min(cosines.values()) > 0.99
    assert build.method == "nearest_centroid"
    assert build.heldout_accuracy >= 0.9
    assert build.details["split"] == {"train": 90, "heldout": 30}
    assert TEMPERATURE_BOUNDS[0] <= build.temperature <= TEMPERATURE_BOUNDS[1]


def test_redecision_with_the_built_centroids_improves_fear_vs_disgust(build):
    fresh = synthetic({"fearful": 100, "disgusted": 100}, seed=2)
    decisions = [enhance(s, e, build.centroids, EnhancementSettings()) for s, e in zip(fresh.scores, fresh.embeddings)]
    report = evaluate(fresh.labels, fresh.scores, [d.label for d in decisions], [d.flags for d in decisions], set())
    fd = report["fear_vs_disgust"]
    print(f"fear vs disgust accuracy: raw {fd['raw_accuracy']:.3f} -> enhanced {fd['enhanced_accuracy']:.3f}")
    assert fd["raw_accuracy"] < 0.8
    assert fd["enhanced_accuracy"] > fd["raw_accuracy"] + 0.15
    changes = report["changes"]
    assert changes["changed_and_right"] > 5 * changes["changed_and_wrong"]


def test_items_without_fear_or_disgust_on_top_are_left_alone(build):
    # Close fear/disgust scores under a neutral top, embeddings in the disgust cluster.
    near_disgust = synthetic({"disgusted": 20}, seed=3).embeddings
    raw = score_vector(neutral=0.5, fearful=0.24, disgusted=0.22)
    for embedding in near_disgust:
        decision = enhance(raw, embedding, build.centroids, EnhancementSettings())
        assert decision.label == "neutral"
        assert decision.details["fear_disgust"] is None
        np.testing.assert_array_equal(decision.scores, raw)


def test_too_little_data_is_refused_and_the_active_version_is_kept(build, sessions, store, clean_db):
    version = save_calibration(sessions, store, build, "test")
    activate(sessions, version)
    few = synthetic({"fearful": 60, "disgusted": 5}, seed=4).labelled()
    with pytest.raises(CalibrationRefused, match="fearful=60, disgusted=5"):
        build_calibration(few, min_per_class=20)
    with sessions() as session:
        assert [(c.version, c.active) for c in list_calibrations(session)] == [(version, True)]


def test_save_and_activate_round_trip_through_s3_and_the_database(build, sessions, store, clean_db):
    first = save_calibration(sessions, store, build, "model-a")
    second = save_calibration(sessions, store, build, "model-a")
    assert second == first + 1
    activate(sessions, first)
    activate(sessions, second)
    activate(sessions, second)  # idempotent
    with sessions() as session:
        rows = list_calibrations(session)
    assert [(r.version, r.active) for r in rows] == [(first, False), (second, True)]
    row = rows[1]
    assert row.object_key == f"calibrations/v{second}.npz"
    assert (row.method, row.model_id, row.counts) == ("nearest_centroid", "model-a", build.counts)
    assert row.temperature == pytest.approx(build.temperature)
    assert row.heldout_accuracy == pytest.approx(build.heldout_accuracy)
    stored = Centroids.from_npz(store.get_bytes(row.object_key))
    assert stored.labels == build.centroids.labels
    np.testing.assert_array_equal(stored.vectors, build.centroids.vectors)
    assert stored.temperature == build.temperature
    with pytest.raises(CalibrationNotFound):
        activate(sessions, second + 100)
    with sessions() as session:
        assert session.scalars(select(Calibration.version).where(Calibration.active)).all() == [second]


def test_a_failed_upload_leaves_no_row(build, sessions, store, clean_db, monkeypatch):
    def fail(*args, **kwargs):
        raise ConnectionError("S3 down")

    monkeypatch.setattr(store, "put_bytes", fail)
    with pytest.raises(ConnectionError):
        save_calibration(sessions, store, build, "test")
    with sessions() as session:
        assert list_calibrations(session) == []


def test_a_worker_uses_a_newly_activated_version_without_restart(build, settings, sessions, store, clean_db):
    ctx = WorkerContext(settings, sessions, store)
    assert ctx.centroids() is None
    v1 = save_calibration(sessions, store, build, "test")
    activate(sessions, v1)
    assert ctx.centroids().version == v1
    other = build_calibration(synthetic({"fearful": 30, "disgusted": 30}, seed=5).labelled(), min_per_class=20)
    v2 = save_calibration(sessions, store, other, "test")
    assert ctx.centroids().version == v1  # saved, not yet active
    activate(sessions, v2)
    now = ctx.centroids()
    assert now.version == v2 and now.source == "calibration"
    np.testing.assert_array_equal(now.vectors, other.centroids.vectors)


def test_labelled_from_reviews_takes_resolved_items_of_the_asked_domain_and_model(sessions, keys):
    submitter = key_id(sessions, "submitter")
    insert_resolved(sessions, submitter, synthetic({"fearful": 3, "disgusted": 2}, seed=6), domain="medical")
    insert_resolved(sessions, submitter, synthetic({"neutral": 4}, seed=7))
    insert_resolved(sessions, submitter, synthetic({"happy": 2}, seed=8), model_id="older-model")
    make_review_item(sessions, submitter, dim=DIM)  # pending: not a label yet
    disputed = make_review_item(sessions, submitter, dim=DIM)
    with transaction(sessions) as session:  # two reviewers disagreed, no adjudication yet: not a label either
        item = session.get(ReviewItem, disputed)
        item.status, item.final_labels = "disagreement", None
    with sessions() as session:
        everything = labelled_from_reviews(session)
        medical = labelled_from_reviews(session, "medical")
        current = labelled_from_reviews(session, model_id="test")
    assert everything.embeddings.shape == (11, DIM) and everything.embeddings.dtype == np.float32
    assert sorted(everything.labels) == ["disgusted"] * 2 + ["fearful"] * 3 + ["happy"] * 2 + ["neutral"] * 4
    assert sorted(medical.labels) == ["disgusted"] * 2 + ["fearful"] * 3 and medical.domains == ["medical"] * 5
    assert "happy" not in current.labels and len(current.labels) == 9
    both = medical + current
    assert both.embeddings.shape == (14, DIM) and len(both.domains) == 14


def test_nothing_resolved_gives_an_empty_set_that_is_refused(sessions, clean_db):
    with sessions() as session:
        empty = labelled_from_reviews(session)
    assert empty.embeddings.shape[0] == 0 and empty.labels == []
    with pytest.raises(CalibrationRefused, match="fearful=0, disgusted=0"):
        build_calibration(empty, min_per_class=20)


def test_manifest_rows_resolve_paths_and_bad_rows_name_their_line(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.wav").write_bytes(b"RIFF")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,domain\na.wav,Fearful\n\nsub/b.wav,disgusted,medical\n")
    rows = read_manifest(manifest)
    assert [(r.path, r.label, r.domain, r.line) for r in rows] == [
        (tmp_path / "a.wav", "fearful", None, 2),
        (tmp_path / "sub" / "b.wav", "disgusted", "medical", 4),
    ]
    for body, message in [
        ("a.wav,fearful\na.wav,scared\n", r"manifest.csv:2: unknown label 'scared'"),
        ("a.wav,fearful\nmissing.wav,fearful\n", r"manifest.csv:2: no such file"),
        ("a.wav\n", r"manifest.csv:1: expected 'path,label\[,domain\]'"),
        ("path,label\n", r"manifest.csv: no rows"),
    ]:
        manifest.write_text(body)
        with pytest.raises(ManifestError, match=message):
            read_manifest(manifest)
