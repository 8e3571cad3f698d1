"""emotion2vec+'s nine classes, in the checkpoint's order, with English names
(the checkpoint's tokens are "中文/english"). Scores everywhere follow this order."""

EMOTION_LABELS: tuple[str, ...] = (
    "angry",
    "disgusted",
    "fearful",
    "happy",
    "neutral",
    "other",
    "sad",
    "surprised",
    "unknown",
)
