# mlplatform image: one image for the web (gunicorn) and worker (celery) processes.
# Build:  docker build -t mlplatform .

# --- build stage: install the locked runtime requirements into a virtualenv -------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# From the hashed locks (`make lock`, ADR 0029): every package at the locked version, and pip
# refuses any file whose hash differs, so two builds install the same bytes.
COPY requirements.lock requirements-converters.lock /tmp/
# Every pin has a manylinux wheel (psycopg-binary, onnxruntime, numpy, pillow): no compiler needed.
RUN /opt/venv/bin/pip install --require-hashes -r /tmp/requirements.lock
# The conversion worker's image (docker-compose.yml worker-conversion, docs/conversion.md) adds
# the converter extras: TensorFlow, tf2onnx, torch (CPU). `--build-arg WITH_CONVERTERS=true`.
# The lock pins torch to its +cpu build with that wheel's hash; PyTorch's CPU index serves it.
ARG WITH_CONVERTERS=false
RUN if [ "$WITH_CONVERTERS" = "true" ]; then \
        /opt/venv/bin/pip install --require-hashes -r /tmp/requirements-converters.lock \
            --extra-index-url https://download.pytorch.org/whl/cpu; \
    fi

# --- runtime stage ------------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=mlplatform.settings.production \
    MODEL_STORE_ROOT=/data/model_store

# A fixed, numeric uid/gid (10001): Kubernetes' runAsNonRoot can only verify a numeric user,
# and deploy/k8s/ sets the same ids (runAsUser, fsGroup for the model store volume).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The code stays owned by root: the app user can read it but not change it.
COPY . /app
# Writable by the app user: var/ (static files, the filesystem broker if used) and the model
# store, a volume shared by web and worker (a new named volume copies this ownership).
RUN mkdir -p /data/model_store /app/var && chown -R app:app /data/model_store /app/var

USER 10001:10001
# Static files for the admin and Swagger UI/ReDoc, collected into STATIC_ROOT (/app/var/static)
# at build time; WhiteNoise serves them from the web process. The production settings refuse to
# load without these variables; the build-only values are never connected to.
RUN SECRET_KEY=collectstatic-build-only ALLOWED_HOSTS=localhost \
    DATABASE_URL=postgres://build@localhost:5432/build REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput

# 8000: gunicorn (web). 9100: a Celery worker's metrics, when WORKER_METRICS_PORT=9100.
EXPOSE 8000 9100
# No HEALTHCHECK here: the one image runs as web, worker, beat and the migrate job, and each
# role has its own check, defined where the role is: docker-compose.yml (healthcheck) and
# deploy/k8s/ (probes).
# gunicorn.conf.py: 2 gthread workers x 2 threads on 0.0.0.0:8000, overridable with GUNICORN_*
# environment variables (docs/decisions/0007-application-server.md).
CMD ["gunicorn", "mlplatform.wsgi", "-c", "gunicorn.conf.py"]
