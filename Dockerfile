# One image for the API, the workers, beat and migrations.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 curl \
    && rm -rf /var/lib/apt/lists/*
# The model cache is a volume in compose: the folder must exist and belong to the
# image's user, or Docker creates the mount point as root and the download fails.
RUN useradd --create-home --uid 10001 emoq \
    && mkdir -p /home/emoq/.cache/modelscope /tmp/emoq-metrics \
    && chown -R emoq:emoq /home/emoq/.cache /tmp/emoq-metrics
WORKDIR /app
COPY requirements.txt constraints.txt ./
# constraints.txt is the development lock, whose torch is the CPU build (torch==2.13.0+cpu)
# found on the development machine's disk, which no registry serves. The image keeps every
# other pin and takes torch==2.13.0 from requirements.txt: on Linux x86_64, PyPI's wheel is
# the CUDA build, and pip brings the NVIDIA libraries it pins.
RUN grep -v '^torch==' constraints.txt > /tmp/constraints-image.txt \
    && pip install --no-cache-dir -r requirements.txt -c /tmp/constraints-image.txt
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
USER emoq
ENV EMOQ_WORK_DIR=/tmp/emoq PROMETHEUS_MULTIPROC_DIR=/tmp/emoq-metrics
EXPOSE 7860
# gunicorn.conf.py (in /app) sets the request limits.
CMD ["gunicorn", "--bind", "0.0.0.0:7860", "--worker-class", "gthread", "--workers", "2", "--threads", "8", "--timeout", "300", "api.wsgi:app"]
