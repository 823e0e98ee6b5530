# syntax=docker/dockerfile:1
# The newsletter service: gunicorn on port 8000 as a non-root user.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=app:app config.py wsgi.py gunicorn.conf.py ./
COPY --chown=app:app newsletter/ newsletter/
COPY --chown=app:app migrations/ migrations/
RUN mkdir -p /app/instance && chown app:app /app/instance

USER 10001:10001
EXPOSE 8000
VOLUME ["/app/instance"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000' + os.environ.get('SCRIPT_NAME', '') + '/healthz', timeout=4).status == 200 else 1)"]

# gunicorn.conf.py: port 8000, shared metrics across workers, one dispatcher
# process; on SIGTERM the workers finish their requests, then the dispatcher its
# batch in flight (each within GRACEFUL_TIMEOUT, 30 s: stop timeout 60 s+).
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
