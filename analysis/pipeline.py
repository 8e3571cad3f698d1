"""The analysis pipeline as plain functions: decode → segment → infer →
enhance → summarise. No Celery, no database: ``worker.jobs`` adds those."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.audio import DecodedAudio, decode
from analysis.engine import SAMPLE_RATE, EmotionEngine, ModelInfo
from analysis.enhance import Centroids, Decision, close_fear_disgust_call, enhance
from analysis.focus import focus_evidence
from analysis.labels import EMOTION_LABELS
from analysis.profile import Profile
from analysis.quality import AudioQuality, measure
from analysis.segment import Segment, segment_channel, speech_probabilities, vad_applies
from analysis.timeline import build_timeline
from config import Settings
from config.settings import QualitySettings

NEGATIVE = ("angry", "disgusted", "fearful", "sad")
# Quality problems under which the model's answer is not trusted.
_UNKNOWN_WHEN = ("no_speech",)


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    object_key: str
    granularity: str = "utterance"
    domain: str | None = None
    channel_roles: tuple[str, ...] | None = None
    # Where an imported recording still has to be fetched from (URL or s3://); None once fetched.
    source: str | None = None


@dataclass
class SegmentAnalysis:
    index: int
    channel: int
    role: str
    start: float
    end: float
    decision: Decision
    raw_scores: np.ndarray  # the model's own scores, before enhancement
    embedding: np.ndarray
    quality: AudioQuality
    timeline: dict | None = None
    frames: np.ndarray | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "channel": self.channel,
            "role": self.role,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "scores": self.decision.scores_dict(),
            "model_scores": {label: float(p) for label, p in zip(EMOTION_LABELS, self.raw_scores)},
            "primary": {"label": self.decision.label, "confidence": self.decision.confidence},
            "flags": self.decision.flags,
            "enhancement": self.decision.details,
            "quality": quality_dict(self.quality),
            "timeline": self.timeline,
        }


@dataclass
class Analysis:
    model: ModelInfo
    audio: DecodedAudio
    segments: list[SegmentAnalysis]
    scores: np.ndarray
    embedding: np.ndarray
    flags: list[str]
    aggregate: dict
    calibration_version: int | None = None
    channel_quality: list[dict] = field(default_factory=list)
    domain_profile: dict = field(default_factory=dict)
    # Wall seconds per stage of analyse(): decode, vad, model, focus (the
    # fear/disgust focus windows: re-scoring on the model), enhance (the rest).
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def primary(self) -> tuple[str, float]:
        if self.aggregate.get("quality_override"):
            return "unknown", float(self.scores[EMOTION_LABELS.index("unknown")])
        top = int(np.argmax(self.scores))
        return EMOTION_LABELS[top], float(self.scores[top])


def quality_dict(q: AudioQuality) -> dict:
    return {
        "duration_seconds": round(q.duration_seconds, 3),
        "speech_seconds": round(q.speech_seconds, 3),
        "speech_ratio": round(q.speech_ratio, 4),
        "snr_db": None if q.snr_db is None else round(q.snr_db, 2),
        "clipping_ratio": round(q.clipping_ratio, 6),
        "flags": list(q.flags),
    }


class InvalidChannelRoles(Exception):
    """The job named a role per channel, but the recording has another number of channels."""


def roles_for(channels: int, requested: tuple[str, ...] | None) -> list[str]:
    if requested:
        if len(requested) != channels:
            raise InvalidChannelRoles(f"{len(requested)} channel roles given for {channels} channel(s)")
        return list(requested)
    return ["speaker"] if channels == 1 else [f"channel_{i}" for i in range(channels)]


def decode_recording(path: Path, settings: Settings) -> DecodedAudio:
    return decode(path, ffmpeg=settings.storage.ffmpeg_exe(), max_duration_seconds=settings.server.max_duration_seconds)


def segment_recording(
    audio: DecodedAudio, settings: Settings, device: str = "cpu"
) -> tuple[list[Segment], list[np.ndarray]]:
    """Utterance segments of every channel, and each channel's speech mask;
    Silero runs on ``device`` (a GPU worker's VAD runs beside its model)."""
    segments: list[Segment] = []
    masks: list[np.ndarray] = []
    # All channels through Silero at once (side by side in its LSTM).
    probs = speech_probabilities(audio.channels, device) if vad_applies(audio.channels.shape[1]) else None
    for channel, samples in enumerate(audio.channels):
        vad = None if probs is None else (lambda _samples, row=probs[channel]: row)
        found, mask = segment_channel(samples, channel, settings.segmentation, device=device, vad=vad)
        if not found:
            # No speech: score the opening stretch anyway so the result still has
            # scores and an embedding, and mark it rather than guess.
            end = min(len(samples) / SAMPLE_RATE, settings.segmentation.max_seconds)
            found = [Segment(channel=channel, start=0.0, end=end)]
        segments.extend(found)
        masks.append(mask)
    return segments, masks


def _segment_quality(
    audio: DecodedAudio, segment: Segment, mask: np.ndarray, thresholds: QualitySettings
) -> AudioQuality:
    samples = audio.channels[segment.channel][int(segment.start * SAMPLE_RATE) : int(segment.end * SAMPLE_RATE)]
    # The speech mask spans the whole channel at its own frame rate.
    mask_rate = len(mask) * SAMPLE_RATE / audio.channels.shape[1]
    seg_mask = mask[int(segment.start * mask_rate) : int(np.ceil(segment.end * mask_rate))]
    return measure(samples, SAMPLE_RATE, seg_mask if len(seg_mask) else None, thresholds)


def analyse(
    path: Path,
    spec: JobSpec,
    engine: EmotionEngine,
    centroids: Centroids | None,
    settings: Settings,
    profile: Profile | None = None,
) -> Analysis:
    clock = time.perf_counter
    t0 = clock()
    audio = decode_recording(path, settings)
    t1 = clock()
    roles = roles_for(audio.channels.shape[0], spec.channel_roles)
    segments, masks = segment_recording(audio, settings, engine.info.device)
    t2 = clock()
    clips = [audio.channels[s.channel][int(s.start * SAMPLE_RATE) : int(s.end * SAMPLE_RATE)] for s in segments]
    keep_frames = spec.granularity == "frame"
    scored = engine.score(clips, keep_frames=keep_frames)
    t3 = clock()
    focus_seconds = 0.0
    profile = profile or Profile(domain=spec.domain, version=None)
    policy = settings.enhancement.with_overrides(profile.thresholds)

    analysed: list[SegmentAnalysis] = []
    for index, (segment, clip_scores) in enumerate(zip(segments, scored)):
        quality = _segment_quality(audio, segment, masks[segment.channel], settings.quality)
        prior_adjusted = profile.apply(clip_scores.scores)
        focus = None
        if close_fear_disgust_call(prior_adjusted, policy):
            f0 = clock()
            focus = focus_evidence(engine, clips[index])
            focus_seconds += clock() - f0
        decision = enhance(prior_adjusted, clip_scores.embedding, centroids, policy, focus)
        decision.details["domain_profile"] = profile.describe()
        for flag in quality.flags:
            if flag not in decision.flags:
                decision.flags.append(flag)
        if any(flag in quality.flags for flag in _UNKNOWN_WHEN):
            decision.details["quality_override"] = "unknown: " + ", ".join(quality.flags)
            decision.label = "unknown"
            decision.confidence = float(decision.scores[EMOTION_LABELS.index("unknown")])
        timeline = None
        if keep_frames and clip_scores.frames is not None and len(clip_scores.frames):
            timeline = build_timeline(
                clip_scores.frames,
                engine.info.frame_rate,
                engine.classify,
                window_seconds=settings.engine.frame_window_seconds,
                hop_seconds=settings.engine.frame_hop_seconds,
                offset=segment.start,
            )
        analysed.append(
            SegmentAnalysis(
                index=index,
                channel=segment.channel,
                role=roles[segment.channel],
                start=segment.start,
                end=segment.end,
                decision=decision,
                raw_scores=clip_scores.scores,
                embedding=clip_scores.embedding,
                quality=quality,
                timeline=timeline,
                frames=clip_scores.frames,
            )
        )
    analysis = summarise(engine.info, audio, analysed, roles, masks, settings.quality, centroids)
    analysis.domain_profile = profile.describe()
    analysis.timings = {
        "decode": t1 - t0,
        "vad": t2 - t1,
        "model": t3 - t2,
        "focus": focus_seconds,
        "enhance": clock() - t3 - focus_seconds,
    }
    return analysis


def _weighted_mean(values: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return (np.stack(values) * weights[:, None]).sum(0) / max(weights.sum(), 1e-9)


def summarise(
    model: ModelInfo,
    audio: DecodedAudio,
    segments: list[SegmentAnalysis],
    roles: list[str],
    masks: list[np.ndarray],
    quality: QualitySettings,
    centroids: Centroids | None,
) -> Analysis:
    speech = [s for s in segments if "no_speech" not in s.quality.flags]
    basis = speech or segments
    weights = np.array([s.duration for s in basis])
    scores = _weighted_mean([s.decision.scores for s in basis], weights)
    scores = scores / scores.sum()
    embedding = _weighted_mean([s.embedding for s in basis], weights).astype(np.float32)

    share: dict[str, float] = dict.fromkeys(EMOTION_LABELS, 0.0)
    for s in speech:
        share[s.decision.label] += s.duration
    total = sum(share.values())
    per_role = {}
    for channel, role in enumerate(roles):
        mine = [s for s in speech if s.channel == channel]
        if mine:
            w = np.array([s.duration for s in mine])
            role_scores = _weighted_mean([s.decision.scores for s in mine], w)
            top = int(np.argmax(role_scores))
            per_role[role] = {
                "channel": channel,
                "speech_seconds": round(float(w.sum()), 3),
                "primary": {"label": EMOTION_LABELS[top], "confidence": float(role_scores[top])},
                "scores": {label: float(p) for label, p in zip(EMOTION_LABELS, role_scores)},
            }
    peaks = sorted(
        speech, key=lambda s: max(s.decision.scores[EMOTION_LABELS.index(n)] for n in NEGATIVE), reverse=True
    )[:3]
    channel_quality = []
    for channel, samples in enumerate(audio.channels):
        q = measure(samples, SAMPLE_RATE, masks[channel] if len(masks[channel]) else None, quality)
        channel_quality.append({"channel": channel, "role": roles[channel], **quality_dict(q)})
    flags: list[str] = []
    for s in segments:
        flags.extend(f for f in s.decision.flags if f not in flags)
    aggregate = {
        "speech_seconds": round(total, 3),
        "speech_share": {k: round(v / total, 4) for k, v in share.items()} if total else {},
        "by_role": per_role,
        "peak_negative_moments": [
            {
                "segment": s.index,
                "role": s.role,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "label": max(NEGATIVE, key=lambda n: s.decision.scores[EMOTION_LABELS.index(n)]),
                "score": float(max(s.decision.scores[EMOTION_LABELS.index(n)] for n in NEGATIVE)),
            }
            for s in peaks
        ],
        "quality_override": None if speech else "unknown: no speech in the recording",
    }
    return Analysis(
        model=model,
        audio=audio,
        segments=segments,
        scores=scores,
        embedding=embedding,
        flags=flags,
        aggregate=aggregate,
        calibration_version=centroids.version if centroids else None,
        channel_quality=channel_quality,
    )
