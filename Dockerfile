# One image for the API, the worker, beat and migrations.
# On Linux x86_64, PyPI's torch 2.13.0 wheel is the CUDA build the GPU worker needs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 emoq
WORKDIR /app
COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
USER emoq
ENV EMOQ_WORK_DIR=/tmp/emoq
EXPOSE 7860
CMD ["gunicorn", "--bind", "0.0.0.0:7860", "--worker-class", "gthread", "--workers", "2", "--threads", "8", "--timeout", "300", "api.wsgi:app"]
