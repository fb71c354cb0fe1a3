# mlplatform image: one image for the web (gunicorn) and worker (celery) processes.
# Build:  docker build -t mlplatform .

# --- build stage: install the pinned runtime requirements into a virtualenv -------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Every pin has a manylinux wheel (psycopg-binary, onnxruntime, numpy, pillow): no compiler needed.
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

# --- runtime stage ------------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=mlplatform.settings.production \
    MODEL_STORE_ROOT=/data/model_store

RUN groupadd --system app && useradd --system --gid app --home-dir /app --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The code stays owned by root: the app user can read it but not change it.
COPY . /app
# Writable by the app user: var/ (static files, the filesystem broker if used) and the model
# store, a volume shared by web and worker (a new named volume copies this ownership).
RUN mkdir -p /data/model_store /app/var && chown -R app:app /data/model_store /app/var

USER app
# Static files for the admin and Swagger UI/ReDoc, collected into STATIC_ROOT (/app/var/static)
# at build time; WhiteNoise serves them from the web process. The production settings refuse to
# load without these variables; the build-only values are never connected to.
RUN SECRET_KEY=collectstatic-build-only ALLOWED_HOSTS=localhost \
    DATABASE_URL=postgres://build@localhost:5432/build REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput

EXPOSE 8000
# gunicorn.conf.py: 2 gthread workers x 2 threads on 0.0.0.0:8000, overridable with GUNICORN_*
# environment variables (docs/decisions/0007-application-server.md).
CMD ["gunicorn", "mlplatform.wsgi", "-c", "gunicorn.conf.py"]
