"""Names both sides of the queue must agree on."""

ANALYSE_TASK = "emoq.analyse_recording"
SWEEP_TASK = "emoq.sweep_stale_jobs"
NOTIFY_TASK = "emoq.notify_job_finished"
RETENTION_TASK = "emoq.apply_retention"
BATCH_NOTIFY_TASK = "emoq.notify_batch_finished"
NOTIFY_REVIEW_TASK = "emoq.notify_review_resolved"
# Sweeps and webhooks must not wait behind hour-long analyses.
MAINTENANCE_QUEUE = "emoq.maintenance"
# Worker processes publish their model status under this prefix (read by /readyz).
HEARTBEAT_PREFIX = "emoq:workers:"
