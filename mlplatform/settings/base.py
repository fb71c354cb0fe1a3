"""Settings shared by every environment; each value can come from the environment.

With no environment set at all, the platform runs on one machine: SQLite in
`var/`, a filesystem Celery broker in `var/broker/` and uploaded models under
`model_store/`. Production and CI set DATABASE_URL and REDIS_URL.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# A local .env file is a convenience for development; the real environment wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Development-only fallback key; production.py refuses to start without SECRET_KEY.
SECRET_KEY = env("SECRET_KEY", default="insecure-local-development-key-do-not-use-in-production")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    # Django's admin as the maintainers' console (named, sections ordered, links).
    "apps.core.admin_site.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.core",
    "apps.accounts",
    "apps.registry",
    "apps.inference",
    "apps.jobs",
    "apps.optimization",
    "apps.oip",
    "apps.rollouts",
    # OAuth 2.0 (ADR 0016): apps.oauth holds the swapped application model, so it comes first.
    "apps.oauth",
    "apps.auditstream",
    "oauth2_provider",
    "django_prometheus",
]

MIDDLEWARE = [
    # Health probes and metrics scrapes, before the Host check and everything else.
    "apps.core.middleware.ProbeMiddleware",
    # Then HTTP metrics (django-prometheus) see every request, its latency and status.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    # NUL and lone surrogates in the path or query string: 400 before any view (README, Security).
    "apps.core.middleware.CleanTextMiddleware",
    # Every route with or without its trailing slash, never a redirect (APPEND_SLASH is off).
    "apps.core.middleware.TrailingSlashMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and Swagger UI's static files in every process, no proxy needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "apps.accounts.middleware.RateLimitHeadersMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.middleware.RequestLogMiddleware",
    "apps.core.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "mlplatform.urls"
# TrailingSlashMiddleware serves both spellings of a route; a redirect would turn a POST into a GET.
APPEND_SLASH = False
# The login page of ordinary users (the OAuth consent page sends them there); staff also
# have the admin's.
LOGIN_URL = "login"
WSGI_APPLICATION = "mlplatform.wsgi.application"
AUTH_USER_MODEL = "accounts.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'mlplatform.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker processes write to one SQLite file: wait for the lock
    # instead of failing, and take the write lock at BEGIN so a read-then-write
    # transaction cannot deadlock against another process.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    # A health check before the first query of every request that reuses a connection:
    # without it, the first request after a database restart fails. On PostgreSQL it
    # polls the idle socket, with a SELECT 1 at most once a second (mlplatform/db/postgresql/).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DB_CONN_HEALTH_CHECKS", default=True)
# Database metrics (django-prometheus): the same backends, instrumented. PostgreSQL's
# adds a health check without a round trip (mlplatform/db/postgresql/base.py).
DATABASES["default"]["ENGINE"] = (
    "mlplatform.db.postgresql"
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    else DATABASES["default"]["ENGINE"].replace("django.db.backends.", "django_prometheus.db.backends.")
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Model store ---------------------------------------------------------------
MODEL_STORE_ROOT = Path(env("MODEL_STORE_ROOT", default=str(BASE_DIR / "model_store")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# A validating worker renews its lease every VALIDATION_HEARTBEAT_SECONDS; a lease not
# renewed for VALIDATION_LEASE_SECONDS means the worker died, and the version may be
# claimed again. A version pending longer than the grace period is re-enqueued.
VALIDATION_HEARTBEAT_SECONDS = env.int("VALIDATION_HEARTBEAT_SECONDS", default=30)
VALIDATION_LEASE_SECONDS = env.int("VALIDATION_LEASE_SECONDS", default=120)
VALIDATION_PENDING_GRACE_SECONDS = env.int("VALIDATION_PENDING_GRACE_SECONDS", default=120)
# Largest accepted model upload; a larger request is refused with 413 before parsing.
MODEL_UPLOAD_MAX_BYTES = env.int("MODEL_UPLOAD_MAX_BYTES", default=500 * 1024 * 1024)
# Uploads above this size are spooled to a temporary file, never held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024

# --- Validation (runs on a worker) -------------------------------------------------
VALIDATION_LATENCY_RUNS = env.int("VALIDATION_LATENCY_RUNS", default=30)
VALIDATION_THROUGHPUT_BATCH = env.int("VALIDATION_THROUGHPUT_BATCH", default=8)
VALIDATION_THROUGHPUT_RUNS = env.int("VALIDATION_THROUGHPUT_RUNS", default=5)
VALIDATION_MAX_ATTEMPTS = env.int("VALIDATION_MAX_ATTEMPTS", default=3)
ORT_INTRA_OP_THREADS = env.int("ORT_INTRA_OP_THREADS", default=1)

# --- Conversion of uploads in other formats (a child process of the `conversion` worker) ----
# Limits the child sets on itself (docs/conversion.md): address space, CPU seconds, largest
# file written; the worker kills it after CONVERSION_WALL_SECONDS.
CONVERSION_MEMORY_LIMIT_MB = env.int("CONVERSION_MEMORY_LIMIT_MB", default=6144)
CONVERSION_CPU_SECONDS = env.int("CONVERSION_CPU_SECONDS", default=600)
CONVERSION_FILE_LIMIT_MB = env.int("CONVERSION_FILE_LIMIT_MB", default=4096)
CONVERSION_WALL_SECONDS = env.int("CONVERSION_WALL_SECONDS", default=900)
# `auto`: no network for the child when `unshare --net` works; `required`: fail otherwise; `off`.
CONVERSION_NETWORK_ISOLATION = env("CONVERSION_NETWORK_ISOLATION", default="auto")
# Parity of the ONNX model with the original: the largest |difference| on float outputs.
CONVERSION_PARITY_ATOL = env.float("CONVERSION_PARITY_ATOL", default=1e-4)
CONVERSION_RANDOM_CHECKS = env.int("CONVERSION_RANDOM_CHECKS", default=3)
CONVERSION_MAX_ATTEMPTS = env.int("CONVERSION_MAX_ATTEMPTS", default=2)
CONVERSION_HEARTBEAT_SECONDS = env.int("CONVERSION_HEARTBEAT_SECONDS", default=30)
CONVERSION_LEASE_SECONDS = env.int("CONVERSION_LEASE_SECONDS", default=120)
# Archives (SavedModel zip/tar, .keras, .pt, .pt2) are refused on upload past these: a zip bomb.
CONVERSION_ARCHIVE_MAX_MEMBERS = env.int("CONVERSION_ARCHIVE_MAX_MEMBERS", default=10000)
CONVERSION_ARCHIVE_MAX_UNPACKED_MB = env.int("CONVERSION_ARCHIVE_MAX_UNPACKED_MB", default=4096)
CONVERSION_ARCHIVE_MAX_RATIO = env.int("CONVERSION_ARCHIVE_MAX_RATIO", default=200)
# Tests only: modules the child may not import, standing for a worker without the extras.
CONVERSION_CHILD_BLOCKED_MODULES: list[str] = []

# --- Inference -------------------------------------------------------------------------
# ONNX Runtime sessions kept per process (least recently used evicted first).
SESSION_CACHE_MAX_MODELS = env.int("SESSION_CACHE_MAX_MODELS", default=8)
SESSION_CACHE_MAX_BYTES = env.int("SESSION_CACHE_MAX_BYTES", default=2 * 1024**3)
ORT_GRAPH_OPTIMIZATION = env("ORT_GRAPH_OPTIMIZATION", default="all").strip().lower()
ORT_PROVIDERS = env.list("ORT_PROVIDERS", default=["CPUExecutionProvider"])  # CPU is always the fallback
# Model calls running at once per process; the rest of a request (decoding, database)
# still overlaps in other threads. See docs/decisions/0007-application-server.md.
INFERENCE_CONCURRENCY = env.int("INFERENCE_CONCURRENCY", default=1)
# A bad value here would fail every prediction (a 500, or a wait forever for 0 slots), so
# the process refuses to start instead.
if ORT_GRAPH_OPTIMIZATION not in ("disable", "basic", "extended", "all"):
    raise ImproperlyConfigured(
        f"ORT_GRAPH_OPTIMIZATION is {ORT_GRAPH_OPTIMIZATION!r}; use disable, basic, extended or all."
    )
if INFERENCE_CONCURRENCY < 1 or ORT_INTRA_OP_THREADS < 0:
    raise ImproperlyConfigured("INFERENCE_CONCURRENCY must be at least 1; ORT_INTRA_OP_THREADS at least 0.")
# Versions under these aliases are loaded when a web or worker process starts.
PRELOAD_ALIASES = env.list("PRELOAD_ALIASES", default=["production"])
# Synchronous prediction limits; larger inputs belong in batch jobs.
SYNC_MAX_BODY_BYTES = env.int("SYNC_MAX_BODY_BYTES", default=32 * 1024 * 1024)
SYNC_MAX_IMAGE_BYTES = env.int("SYNC_MAX_IMAGE_BYTES", default=10 * 1024 * 1024)
SYNC_MAX_IMAGES = env.int("SYNC_MAX_IMAGES", default=32)
# Decoded-size limit, checked from the image header before any pixel is decoded.
MAX_IMAGE_PIXELS = env.int("MAX_IMAGE_PIXELS", default=40_000_000)
# The Open Inference Protocol over gRPC (manage.py grpcserver, docs/operations.md): its port,
# its threads (calls served at once; model calls still take INFERENCE_CONCURRENCY slots), the
# largest message either way (larger is RESOURCE_EXHAUSTED), and the port of its own
# Prometheus metrics (0: none).
GRPC_PORT = env.int("GRPC_PORT", default=8001)
GRPC_MAX_WORKERS = env.int("GRPC_MAX_WORKERS", default=8)
GRPC_MAX_MESSAGE_BYTES = env.int("GRPC_MAX_MESSAGE_BYTES", default=SYNC_MAX_BODY_BYTES)
GRPC_METRICS_PORT = env.int("GRPC_METRICS_PORT", default=0)
PREDICT_DEFAULT_TOP_K = 5
PREDICT_MAX_TOP_K = 100
DATA_UPLOAD_MAX_MEMORY_SIZE = SYNC_MAX_BODY_BYTES  # JSON bodies with base64 images

# --- Batch jobs (docs/workers.md) ---------------------------------------------------
JOB_MAX_ITEMS = env.int("JOB_MAX_ITEMS", default=10_000)
JOB_MAX_ITEM_BYTES = env.int("JOB_MAX_ITEM_BYTES", default=50 * 1024 * 1024)
JOB_MAX_BYTES = env.int("JOB_MAX_BYTES", default=2 * 1024 * 1024 * 1024)
# Multipart files per request (Django's guard); bigger jobs come as a zip or tar.
DATA_UPLOAD_MAX_NUMBER_FILES = env.int("DATA_UPLOAD_MAX_NUMBER_FILES", default=1000)
JOB_BATCH_SIZE = env.int("JOB_BATCH_SIZE", default=32)  # items per model call
JOB_LEASE_SECONDS = env.int("JOB_LEASE_SECONDS", default=30)
JOB_HEARTBEAT_SECONDS = env.float("JOB_HEARTBEAT_SECONDS", default=10.0)
JOB_QUEUED_GRACE_SECONDS = env.int("JOB_QUEUED_GRACE_SECONDS", default=30)
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=5)
JOB_PROGRESS_INTERVAL_SECONDS = env.float("JOB_PROGRESS_INTERVAL_SECONDS", default=1.0)
JOB_SOFT_TIME_LIMIT_SECONDS = env.int("JOB_SOFT_TIME_LIMIT_SECONDS", default=60 * 60)
JOB_TIME_LIMIT_SECONDS = env.int("JOB_TIME_LIMIT_SECONDS", default=65 * 60)
# Publishing a job's message: a few quick tries, then leave it to the reconciler.
JOB_ENQUEUE_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# --- Optimization (docs/optimization.md) ---------------------------------------------
EVALUATION_SET_MAX_BYTES = env.int("EVALUATION_SET_MAX_BYTES", default=500 * 1024 * 1024)
OPTIMIZATION_MAX_ATTEMPTS = env.int("OPTIMIZATION_MAX_ATTEMPTS", default=2)
OPTIMIZATION_CALIBRATION_SIZE = env.int("OPTIMIZATION_CALIBRATION_SIZE", default=200)  # items
# Entropy and Percentile calibration hold every input's activations in memory.
OPTIMIZATION_HISTOGRAM_CALIBRATION_MAX = env.int("OPTIMIZATION_HISTOGRAM_CALIBRATION_MAX", default=32)
OPTIMIZATION_LATENCY_RUNS = env.int("OPTIMIZATION_LATENCY_RUNS", default=50)
OPTIMIZATION_MAX_TOP1_DROP = env.float("OPTIMIZATION_MAX_TOP1_DROP", default=1.0)  # percentage points
# auto-int8's time box: it returns the best passing candidate found by then, or fails clearly.
# Below CELERY_TASK_SOFT_TIME_LIMIT, with room for validating and measuring the result.
OPTIMIZATION_AUTO_INT8_SECONDS = env.float("OPTIMIZATION_AUTO_INT8_SECONDS", default=900)
# Webhooks: private, loopback and link-local receivers are refused unless listed here (CIDRs).
WEBHOOK_ALLOWED_NETWORKS = env.list("WEBHOOK_ALLOWED_NETWORKS", default=[])
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=6)
WEBHOOK_RETRY_BASE_SECONDS = env.int("WEBHOOK_RETRY_BASE_SECONDS", default=10)
WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=3.0)
WEBHOOK_READ_TIMEOUT_SECONDS = env.float("WEBHOOK_READ_TIMEOUT_SECONDS", default=10.0)
# A rotated-out webhook secret keeps signing this long, next to the new one (Standard Webhooks).
WEBHOOK_SECRET_OVERLAP_SECONDS = env.int("WEBHOOK_SECRET_OVERLAP_SECONDS", default=86400)
# The pre-Standard-Webhooks X-MLPlatform-Signature header, sent too during the transition (ADR 0028).
WEBHOOK_LEGACY_SIGNATURE = env.bool("WEBHOOK_LEGACY_SIGNATURE", default=True)

# --- Celery --------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
# Audit rows and the quota (ADR 0030, README "Audit modes"): "durable" commits each request's
# rows and quota spend before it answers; "stream" appends them to a Redis stream, counts the
# quota in Redis, and `manage.py auditwriter` copies the rows into PostgreSQL in batches.
# Without Redis or PostgreSQL, "stream" falls back to "durable" and says so at start.
AUDIT_MODE = env("AUDIT_MODE", default="durable")
AUDIT_STREAM_KEY = env("AUDIT_STREAM_KEY", default=env("CACHE_KEY_PREFIX", default="mlp") + ":audit")
AUDIT_WRITER_BATCH = env.int("AUDIT_WRITER_BATCH", default=500)  # stream entries per transaction
# A stream entry a writer took but did not acknowledge this long ago (a dead writer) is taken over.
AUDIT_WRITER_CLAIM_SECONDS = env.float("AUDIT_WRITER_CLAIM_SECONDS", default=30.0)
# After a part batch the writer waits this long, so rows are copied many to a transaction.
AUDIT_WRITER_LINGER_SECONDS = env.float("AUDIT_WRITER_LINGER_SECONDS", default=0.5)
BROKER_DIR = Path(env("BROKER_DIR", default=str(VAR_DIR / "broker")))
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: messages are files in one folder shared by the web
    # process and the local worker, so no broker server is needed.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    for _folder in ("queue", "processed", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
else:
    # A task not acknowledged within this time is redelivered; it must exceed the
    # longest task (the hard time limit below), or long tasks would run twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": max(2 * 60 * 60, JOB_TIME_LIMIT_SECONDS + 600)}
# Results live in PostgreSQL rows (the version's status), not in Celery.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Inference tasks are long and CPU-bound: take one message at a time so a busy
# worker does not hoard work another worker could do.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Each task's own options (queue, late acks, time limits) are its profile in
# workers/profiles.py. These are the defaults under them, for a task without one:
# ack after the task finishes, so a killed worker's task is redelivered (every task
# here is idempotent: validation, jobs and webhooks check the database first).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# The time limits of the validation and reconciler profiles; the job profile has its
# own, longer limits (JOB_*_TIME_LIMIT_SECONDS).
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=30 * 60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=35 * 60)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Three queues, so a flood of one kind of work never starves another (docs/workers.md):
# `validation` (model checks), `jobs` (batch inference), `default` (small tasks:
# reconcilers, webhooks). Inference queues want prefetch 1 (above). Which task goes to
# which queue is its profile (workers/profiles.py), which may only name a queue listed here.
CELERY_QUEUES_MONITORED = ["validation", "jobs", "default", "shadow", "conversion"]  # mlplatform_queue_depth
# The database is the source of truth; the broker only rings the bell. Beat runs the
# reconcilers, which re-enqueue work owed after a lost message, a dead worker or a
# broker restart.
CELERY_BEAT_SCHEDULE = {
    "reconcile-versions": {"task": "workers.registry.reconcile", "schedule": 60.0},
    "reconcile-optimizations": {"task": "workers.optimization.reconcile", "schedule": 60.0},
    "reconcile-jobs": {
        "task": "workers.jobs.reconcile",
        "schedule": env.float("JOB_RECONCILE_INTERVAL_SECONDS", default=15.0),
    },
    # Rollouts' guard rails (ADR 0017): one bounded, indexed query per active candidate.
    "check-rollout-guards": {
        "task": "workers.rollouts.check_guards",
        "schedule": env.float("ROLLOUT_GUARD_INTERVAL_SECONDS", default=15.0),
    },
    # Stored shadow inputs a lost message left behind (ADR 0018).
    "sweep-shadow-inputs": {"task": "workers.rollouts.sweep_shadow_inputs", "schedule": 3600.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = env(
    "CELERY_BEAT_SCHEDULE_FILENAME", default=str(VAR_DIR / "celerybeat-schedule")
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- REST framework ---------------------------------------------------------------
REST_FRAMEWORK = {
    # Bearer first (a JWT or an OAuth access token, told apart by the token's form), so an
    # unauthenticated API request gets 401 with `WWW-Authenticate: Bearer`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.BearerAuthentication",
        "apps.accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "apps.accounts.permissions.ApiKeyScope",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["apps.accounts.throttling.ScopedRateThrottle"],
    # Clients behind this many trusted proxies: the client address is taken from X-Forwarded-For.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "apps.core.renderers.JSONRenderer",  # writes a lone surrogate as an escape, not a 500
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.exception_handler.api_exception_handler",
    # Around every view's parser: size limits while reading, NUL/surrogate text refused.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "apps.core.negotiation.CheckedContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "mlplatform API",
    "DESCRIPTION": "Model registry and prediction API: ONNX models in, versioned prediction APIs out.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's Authorize: the authorization-code flow with PKCE (S256), as the server requires.
    "SWAGGER_UI_OAUTH2_CONFIG": {"usePkceWithAuthorizationCodeGrant": True},
    # Several models have a field `status`: a rollout's choices get their own name.
    "ENUM_NAME_OVERRIDES": {"RolloutStatusEnum": "apps.rollouts.models.Rollout.Status"},
    # Tags per area, a summary per operation, examples (apps/core/schema_docs.py), after the
    # default hook that names the enums.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.core.schema_docs.postprocess",
        # every 4xx the shared layers answer (auth, throttles, parsing, limits), per operation
        "apps.core.schema_errors.postprocess",
    ],
}

# --- Authentication, throttling, quotas ----------------------------------------------------------
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "AUTH_HEADER_TYPES": ("Bearer",),
}
# Key for the HMAC-SHA256 digests of API key secrets; rotating it invalidates every key.
API_KEY_HMAC_SECRET = env("API_KEY_HMAC_SECRET", default=SECRET_KEY)
# Authenticated keys are cached this long (revocation and owner changes evict them at once).
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=60)
# last_used_at is written at most this often per key, not on every request.
API_KEY_LAST_USED_INTERVAL_SECONDS = 60
# Default request rates per user, by scope; an admin overrides them per user (UserLimits).
# With Redis down, serve without rate limits (True) or answer 503 (False).
RATE_LIMIT_FAIL_OPEN = env.bool("RATE_LIMIT_FAIL_OPEN", default=True)
THROTTLE_RATES = {
    "predict": env("THROTTLE_RATE_PREDICT", default="1200/min"),
    "jobs": env("THROTTLE_RATE_JOBS", default="60/min"),
    "registry_write": env("THROTTLE_RATE_REGISTRY_WRITE", default="120/min"),
}
# Failed authentications allowed per client address before it gets 429.
AUTH_FAILURE_RATE = env("AUTH_FAILURE_RATE", default="30/min")
# Predictions per user per calendar month (UTC); blank means unlimited, 0 means none.
_quota = env.str("MONTHLY_PREDICTION_QUOTA", default="100000").strip()
MONTHLY_PREDICTION_QUOTA = int(_quota) if _quota else None
# Per-user limits are cached this long, so an admin's change applies within it.
LIMITS_CACHE_SECONDS = 60
# Hot read paths (a prediction's model and version, a user's limits) are also kept in
# each process this long: a change made elsewhere (an alias moved by another web
# process, say) reaches this process within this time. 0 turns the layer off.
LOCAL_CACHE_SECONDS = env.float("LOCAL_CACHE_SECONDS", default=2.0)
# Rollouts (ADR 0017): a version's statistics (comparison, guard rails) read at most this
# many of its latest audit rows in the rollout's window, so a long rollout costs a bounded query.
ROLLOUT_STATS_MAX_ROWS = env.int("ROLLOUT_STATS_MAX_ROWS", default=10_000)
# Shadow traffic (ADR 0018). Its queue; each web process's sender stores and enqueues its
# pending shadow requests every SHADOW_BATCH_SECONDS as one file and one message of at most
# SHADOW_BATCH_MAX requests (0 seconds: at once, in the request's thread, as the tests do).
SHADOW_QUEUE = "shadow"
SHADOW_BATCH_SECONDS = env.float("SHADOW_BATCH_SECONDS", default=1.0)
SHADOW_BATCH_MAX = env.int("SHADOW_BATCH_MAX", default=64)
# Drop rule: a batch finding this many messages waiting in the shadow queue is dropped (and
# counted), so the backlog stays bounded; so is a request finding its process's buffer full.
SHADOW_QUEUE_MAX_BACKLOG = env.int("SHADOW_QUEUE_MAX_BACKLOG", default=50)
SHADOW_BUFFER_MAX_REQUESTS = env.int("SHADOW_BUFFER_MAX_REQUESTS", default=256)
# Stored shadow inputs no message claimed are deleted after this long (beyond the broker's
# visibility timeout, so a redelivered message still finds its inputs).
SHADOW_INPUT_RETENTION_HOURS = env.int("SHADOW_INPUT_RETENTION_HOURS", default=24)

# --- OAuth 2.0 (django-oauth-toolkit; docs/decisions/0016-oauth2-with-django-oauth-toolkit.md) ---
# Decided before the toolkit's first migration: its application model is ours, with the
# platform's scopes and a model list per application.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth.Application"
OAUTH_ACCESS_TOKEN_SECONDS = env.int("OAUTH_ACCESS_TOKEN_SECONDS", default=15 * 60)
OAUTH_REFRESH_TOKEN_DAYS = env.int("OAUTH_REFRESH_TOKEN_DAYS", default=30)
# Authenticated access tokens are cached this long (revocation and changes to the
# application or the user evict them at once), never past the token's own expiry.
OAUTH_TOKEN_CACHE_SECONDS = env.int("OAUTH_TOKEN_CACHE_SECONDS", default=60)
OAUTH2_PROVIDER = {
    "SCOPES_BACKEND_CLASS": "apps.oauth.server.PlatformScopes",
    "SCOPES": {},  # unused: the scopes are the platform's (PlatformScopes)
    "OAUTH2_SERVER_CLASS": "apps.oauth.server.PlatformServer",
    "OAUTH2_VALIDATOR_CLASS": "apps.oauth.server.PlatformValidator",
    "APPLICATION_ADMIN_CLASS": "apps.oauth.admin.ApplicationAdmin",
    # Tokens that say what they are (mlpat_…, mlprt_…): the Bearer path tells them from a JWT.
    "ACCESS_TOKEN_GENERATOR": "apps.oauth.tokens.new_access_token",
    "REFRESH_TOKEN_GENERATOR": "apps.oauth.tokens.new_refresh_token",
    "ACCESS_TOKEN_EXPIRE_SECONDS": OAUTH_ACCESS_TOKEN_SECONDS,
    "REFRESH_TOKEN_EXPIRE_SECONDS": OAUTH_REFRESH_TOKEN_DAYS * 24 * 3600,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    # Client secrets are 128 random characters: an HMAC digest at rest, as for API keys,
    # not a password hash that would cost ~0.2 s of CPU per token request (measured: 214 ms).
    "CLIENT_SECRET_HASHER": "hmac_sha256",
    # Refresh tokens rotate; a rotated one presented again revokes its whole family.
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "PKCE_REQUIRED": True,
    "REQUEST_APPROVAL_PROMPT": "force",  # the consent page every time
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "client_credentials", "refresh_token"],
    # RFC 9700 (OAuth 2.0 Security Best Current Practice), enforced: no implicit or password
    # grant, PKCE S256 only, tokens stored as SHA-256 digests, `iss` in the authorization
    # response (RFC 9207), no access tokens in query strings.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
}
# `http` redirect URIs stay allowed, for loopback addresses only (RFC 8252 §7.3: native apps,
# and development): apps.oauth.models.Application.clean refuses any other http URI, which
# the toolkit's deploy check (W008) cannot see.
SILENCED_SYSTEM_CHECKS = ["oauth2_provider.W008"]
# The client-secret digest (apps/oauth/hashers.py) next to Django's password hashers, which
# keep hashing passwords (the first one in the list does).
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "apps.oauth.hashers.ClientSecretHasher",
]

# The shared cache holds rate-limit counters: Redis whenever there is one, so that
# limits hold across processes and machines; in-process memory on the embedded default.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "apps.core.cache.RedisCache",
            "LOCATION": env("CACHE_URL", default=REDIS_URL),
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="mlp"),
            # Fail fast while Redis is down: requests go on without the cache (apps/core/cache.py).
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Internationalisation, static files ----------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "static")))
# The console's index links the Grafana dashboard when this is set (e.g. http://localhost:3000/d/mlplatform).
GRAFANA_URL = env("GRAFANA_URL", default="")
# Files served at the site's root by WhiteNoise: /favicon.ico, which browsers ask for on every page.
WHITENOISE_ROOT = BASE_DIR / "apps" / "core" / "public"

# --- Logging ----------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# json: one JSON object per line (web and workers), for log shippers; plain: for people.
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "timestamp": False,
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # One line per request comes from apps.core.middleware.RequestLogMiddleware instead.
        "gunicorn.access": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
        # oauthlib logs the tokens it issues at DEBUG: never below INFO, whatever LOG_LEVEL says.
        "oauthlib": {"level": "INFO"},
    },
}
# /metrics: open to these networks (CIDRs), or to anyone presenting METRICS_TOKEN as a bearer token.
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
METRICS_TOKEN = env("METRICS_TOKEN", default="")
