"""Settings, all from the environment (django-environ).

The hub fails closed: ``HUB_ENV`` defaults to ``production``, which refuses to start
without a secret key, a database, a broker and encryption keys, and turns on HSTS,
the SSL redirect and secure cookies. A checkout opts into ``HUB_ENV=development``
(the Makefile and the test configuration do), whose defaults need nothing but
Python: SQLite and a filesystem broker under ``var/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

HUB_ENV = env.str("HUB_ENV", default="production")
if HUB_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"HUB_ENV must be 'development' or 'production', not {HUB_ENV!r}")
PRODUCTION = HUB_ENV == "production"

VAR_DIR = Path(env.str("HUB_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Prometheus multiprocess mode: every gunicorn and Celery process writes its samples
# under this directory and GET /metrics adds them up. It must be set before
# prometheus_client is first imported, hence here.
PROMETHEUS_MULTIPROC_DIR = Path(os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", env.str("HUB_METRICS_DIR", default=str(VAR_DIR / "prometheus"))))
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)


def _required(name: str) -> str:
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"{name} must be set when HUB_ENV=production (the default); a local checkout sets HUB_ENV=development"
        )
    return value


_DEV_SECRET_KEY = "dev-only-insecure-key-change-me"
if PRODUCTION:
    SECRET_KEY = _required("SECRET_KEY")
    if SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured("SECRET_KEY must be a random value of at least 50 characters in production")
    _database_url = _required("DATABASE_URL")
    CELERY_BROKER_URL = _required("CELERY_BROKER_URL")
else:
    SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY)
    _database_url = env.str("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'hub.sqlite3'}")
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")

DEBUG = env.bool("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG cannot be on when HUB_ENV=production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["*"])
if PRODUCTION and (not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS):
    raise ImproperlyConfigured("ALLOWED_HOSTS must name the hub's hosts when HUB_ENV=production")

DATABASES = {"default": env.db_url_config(_database_url)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: wait for locks instead of failing, and
    # take the write lock at BEGIN so two writers never deadlock on an upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so a Celery worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-hub.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "canonical",
    "connectors",
    "integration_hub.runtime",
    "integration_hub.operations",
    "integration_hub.workflows",
    "integration_hub.usage",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files under gunicorn too (the admin's CSS, Swagger UI, Redoc).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "integration_hub.api.guard.ApiGuardMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

# Admin login lockout (django-axes): after HUB_LOGIN_FAILURE_LIMIT failed logins for
# one username from one address, that pair is locked for HUB_LOGIN_COOLOFF_HOURS.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("HUB_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("HUB_LOGIN_COOLOFF_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

ROOT_URLCONF = "integration_hub.urls"
WSGI_APPLICATION = "integration_hub.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
            ]
        },
    }
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("HUB_STATIC_ROOT", default=str(VAR_DIR / "static")))
# Production serves what `collectstatic` wrote (compressed, with hashed names; the
# Dockerfile runs it); development and tests serve straight from the apps.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing one

if PRODUCTION:
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("HUB_SECURE_COOKIES", default=True)
    SECURE_SSL_REDIRECT = env.bool("HUB_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("HUB_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("HUB_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("HUB_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading is a commitment made with the browsers, the operator's call.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    CSRF_TRUSTED_ORIGINS = env.list(
        "CSRF_TRUSTED_ORIGINS", default=[f"https://{host.lstrip('.')}" for host in ALLOWED_HOSTS]
    )
    X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Throttle counters: a shared cache when HUB_CACHE_URL names one (Redis), else per process.
_cache_url = env.str("HUB_CACHE_URL", default="")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url,
                "KEY_PREFIX": "hub"}
    if _cache_url else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "integration_hub.api.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # A JSON API: form and multipart bodies are 415, not a second way in.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "integration_hub.api.pagination.HubPagination",
    "PAGE_SIZE": 50,
    # Per user everywhere; sync triggers (which spend the CRM's API quota) and replays
    # have their own, lower rates (``throttle_classes`` on those views).
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.AnonRateThrottle",
                                 "rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("HUB_THROTTLE_ANON", default="60/min"),
        "user": env.str("HUB_THROTTLE_USER", default="600/min"),
        "sync": env.str("HUB_THROTTLE_SYNC", default="6/min"),
        "replay": env.str("HUB_THROTTLE_REPLAY", default="60/min"),
    },
    "EXCEPTION_HANDLER": "integration_hub.api.guard.drf_exception_handler",
}
# API tokens expire this long after they were created (``drf_create_token -r`` renews).
HUB_API_TOKEN_TTL_HOURS = env.float("HUB_API_TOKEN_TTL_HOURS", default=24 * 30)
HUB_API_MAX_PAGE_SIZE = env.int("HUB_API_MAX_PAGE_SIZE", default=200)
SPECTACULAR_SETTINGS = {
    "TITLE": "Integration Hub API",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema is for people who may call the API; Swagger UI and Redoc come from
    # drf-spectacular-sidecar's static files, never a CDN.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# E-mail to the owning team (new high-severity exceptions, SLA breaches). Django's
# backend: SMTP in production (EMAIL_URL), the console in development.
vars().update(env.email_url("EMAIL_URL", default="consolemail://" if not PRODUCTION else "smtp://localhost:25"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="integration-hub@localhost")
# Per team, where its notifications go (besides its members' addresses), e.g.
# "finance=ap-team@example.com;it_operations=oncall@example.com".
HUB_TEAM_EMAILS = {
    team: [address for address in addresses.split(",") if address]
    for team, _, addresses in (item.partition("=") for item in env.str("HUB_TEAM_EMAILS", default="").split(";"))
    if team
}
HUB_NOTIFY_INTERVAL_SECONDS = env.int("HUB_NOTIFY_INTERVAL_SECONDS", default=60)
# GET /metrics: Prometheus scrapes it with "Authorization: Bearer <token>"; without a
# token configured only a signed-in staff user can read it.
HUB_METRICS_TOKEN = env.str("HUB_METRICS_TOKEN", default="")

# Celery: JSON only, no result backend (state lives in our tables), late acks with
# re-queue on a lost worker, one message prefetched, time limits below the broker's
# visibility timeout so a running task is never handed to a second worker.
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS |= {"socket_timeout": 5, "socket_connect_timeout": 5}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("HUB_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = env.int("HUB_TASK_TIME_LIMIT", default=90)
CELERY_TASK_DEFAULT_QUEUE = env.str("HUB_QUEUE", default="hub")
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
# Publishing must not hang a webhook request when the broker is down: the inbox row
# is already committed and the sweeper will enqueue it.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE

# The hub's own knobs.
HUB_CONNECTOR_PACKAGES = env.list(
    "HUB_CONNECTOR_PACKAGES",
    default=["connectors.stripe", "connectors.tryton", "connectors.salesforce", "connectors.hubspot",
             "connectors.product_platform", "connectors.rates"],
)
# The scheduled CRM pull (safety net for missed webhooks); the migration creates the
# beat entry with this interval, later edited in the admin.
HUB_CRM_PULL_INTERVAL_SECONDS = env.int("HUB_CRM_PULL_INTERVAL_SECONDS", default=300)
# Behind a proxy, HubSpot's v3 signature covers the public URL: the hub must rebuild
# it from the proxy's X-Forwarded-Host (production already trusts X-Forwarded-Proto).
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=False)
HUB_WEBHOOK_MAX_BYTES = env.int("HUB_WEBHOOK_MAX_BYTES", default=1024 * 1024)
HUB_DELIVERY_MAX_ATTEMPTS = env.int("HUB_DELIVERY_MAX_ATTEMPTS", default=8)
HUB_INBOUND_MAX_ATTEMPTS = env.int("HUB_INBOUND_MAX_ATTEMPTS", default=5)
HUB_RETRY_BASE_SECONDS = env.float("HUB_RETRY_BASE_SECONDS", default=2.0)
HUB_RETRY_CAP_SECONDS = env.float("HUB_RETRY_CAP_SECONDS", default=600.0)
# After a call whose outcome is unknown (a timeout), the target may still be working
# on it: the lookup that decides whether to send again comes at least this long (and
# twice the lost call's length) after the call began.
HUB_UNKNOWN_OUTCOME_SETTLE_SECONDS = env.float("HUB_UNKNOWN_OUTCOME_SETTLE_SECONDS", default=10.0)
# A queued message not picked up within this time is presumed lost and re-enqueued.
HUB_REENQUEUE_AFTER_SECONDS = env.int("HUB_REENQUEUE_AFTER_SECONDS", default=60)
# An in-flight delivery older than this lost its worker; must exceed the hard time limit.
HUB_IN_FLIGHT_LEASE_SECONDS = env.int("HUB_IN_FLIGHT_LEASE_SECONDS", default=CELERY_TASK_TIME_LIMIT + 30)
# How many of the deliveries an inbox event plans (ready at once) its own task runs
# right after committing them, instead of sending each to the broker for another task:
# a broker round trip, a task and a connection check less per event. 0 sends them all.
HUB_INLINE_DELIVERIES = env.int("HUB_INLINE_DELIVERIES", default=1)
# A worker whose call frees a concurrency slot another delivery waits for takes that
# delivery itself (the slot handed over, no broker round trip), for this many seconds
# into its task; after that the waiter is woken through the broker. Well below the soft
# time limit, which counts the whole task: a third of it by default.
HUB_HANDOVER_SECONDS = env.float("HUB_HANDOVER_SECONDS", default=CELERY_TASK_SOFT_TIME_LIMIT / 3)
HUB_SWEEP_INTERVAL_SECONDS = env.int("HUB_SWEEP_INTERVAL_SECONDS", default=15)
# The admission governor's shared state: Redis when available (defaults to a Redis
# broker's URL), else a row per connection in the database.
HUB_REDIS_URL = env.str(
    "HUB_REDIS_URL", default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
# Deliveries held by a maintenance window resume spread over this many seconds after it.
HUB_MAINTENANCE_DRAIN_SECONDS = env.int("HUB_MAINTENANCE_DRAIN_SECONDS", default=60)
# Hosts the outbound URL policy lets connections reach although they are internal
# (loopback, private, link-local): local sandboxes, tests, a self-hosted ERP.
HUB_ALLOWED_INTERNAL_HOSTS = env.list(
    "HUB_ALLOWED_INTERNAL_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "::1"]
)
# Fernet keys (comma separated, newest first) for connection credentials at rest.
HUB_ENCRYPTION_KEYS = env.list("HUB_ENCRYPTION_KEYS", default=[])
if PRODUCTION and not HUB_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("HUB_ENCRYPTION_KEYS must be set when HUB_ENV=production")
if HUB_HANDOVER_SECONDS >= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured("HUB_HANDOVER_SECONDS must stay below the task soft time limit")
if HUB_IN_FLIGHT_LEASE_SECONDS <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("HUB_IN_FLIGHT_LEASE_SECONDS must exceed the task hard time limit")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {"()": "integration_hub.logging.formatter", "json": env.bool("LOG_JSON", default=PRODUCTION)}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"},
                # The embedded filesystem broker has no host; kombu warns about it on every connection.
                **({"kombu.connection": {"level": "ERROR"}} if CELERY_BROKER_URL.startswith("filesystem://") else {})},
}

# Queues per workflow class (docs/scaling.md), so bulk work never delays finance postings:
# a workflow's class (runtime.dispatch.QueueClass) picks the queue of its inbound events and
# deliveries (runtime.routing), and task routes send the workflows' own tasks the same way.
# Usage aggregation (docs/usage.md) is the bulk class with its own long tasks.
HUB_USAGE_QUEUE = env.str("HUB_USAGE_QUEUE", default=f"{CELERY_TASK_DEFAULT_QUEUE}-usage")
HUB_QUEUES = {
    "default": CELERY_TASK_DEFAULT_QUEUE,
    "finance": env.str("HUB_FINANCE_QUEUE", default=f"{CELERY_TASK_DEFAULT_QUEUE}-finance"),
    "customer": env.str("HUB_CUSTOMER_QUEUE", default=f"{CELERY_TASK_DEFAULT_QUEUE}-customer"),
    "catalog": env.str("HUB_CATALOG_QUEUE", default=f"{CELERY_TASK_DEFAULT_QUEUE}-catalog"),
    "usage": HUB_USAGE_QUEUE,
}
CELERY_TASK_ROUTES = {
    "hub.usage_*": {"queue": HUB_USAGE_QUEUE},
    "hub.catalog_*": {"queue": HUB_QUEUES["catalog"]},
    "hub.customers_pull*": {"queue": HUB_QUEUES["customer"]},
}
# Every hub queue is declared here, so a worker started without -Q consumes them all (one
# worker gets everything: `make worker`, the demo, the tests); a worker per class names its
# queue with -Q (docker-compose.yml). On RabbitMQ they are quorum queues (replicated,
# durable), each on its own topic exchange so that Celery's native delayed delivery can
# route a countdown task (a retry, a held delivery) back to it through the broker's
# celery_delayed_* queues instead of a worker holding it unacknowledged; any other queue a
# `-Q` names is declared the same way when first used. Publisher confirms: a send returns
# once the broker has the message.
HUB_NATIVE_DELAYED_DELIVERY = CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://"))
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name, type="topic" if HUB_NATIVE_DELAYED_DELIVERY else "direct"), routing_key=name,
          queue_arguments={"x-queue-type": "quorum"} if HUB_NATIVE_DELAYED_DELIVERY else None)
    for name in dict.fromkeys(HUB_QUEUES.values())  # two classes may share one queue
)
if HUB_NATIVE_DELAYED_DELIVERY:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = "quorum"
    CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE = "topic"
    CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE = "quorum"
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True  # per-consumer prefetch: quorum queues have no global QoS
HUB_USAGE_STORAGE_DIR = env.str("HUB_USAGE_STORAGE_DIR", default=str(VAR_DIR / "usage"))
HUB_USAGE_DROP_DIR = env.str("HUB_USAGE_DROP_DIR", default="")
HUB_USAGE_LATE_POLICY = env.str("HUB_USAGE_LATE_POLICY", default="next_period")
# Rows staged per committed chunk (each commit updates the batch's live counts).
HUB_USAGE_LOAD_CHUNK = env.int("HUB_USAGE_LOAD_CHUNK", default=50_000)
if HUB_USAGE_LATE_POLICY not in ("next_period", "hold"):
    raise ImproperlyConfigured("HUB_USAGE_LATE_POLICY must be next_period or hold")
HUB_USAGE_CLOSE_AFTER_HOURS = env.int("HUB_USAGE_CLOSE_AFTER_HOURS", default=24)
# After the month ends, when its invoices (and their ERP postings) are part of the checkpoint.
HUB_USAGE_INVOICE_AFTER_HOURS = env.int("HUB_USAGE_INVOICE_AFTER_HOURS", default=72)
HUB_USAGE_TASK_SOFT_TIME_LIMIT = env.int("HUB_USAGE_TASK_SOFT_TIME_LIMIT", default=1800)
HUB_USAGE_TASK_TIME_LIMIT = env.int("HUB_USAGE_TASK_TIME_LIMIT", default=1900)
# A batch loading for longer than this is taken as dead (its worker was killed) and loaded
# again by the sweep; more than the hard time limit, so a live load is never restarted.
HUB_USAGE_LOAD_LEASE_SECONDS = env.int("HUB_USAGE_LOAD_LEASE_SECONDS", default=HUB_USAGE_TASK_TIME_LIMIT + 30)
if HUB_USAGE_LOAD_LEASE_SECONDS <= HUB_USAGE_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("HUB_USAGE_LOAD_LEASE_SECONDS must be more than HUB_USAGE_TASK_TIME_LIMIT")
HUB_USAGE_SWEEP_INTERVAL_SECONDS = env.int("HUB_USAGE_SWEEP_INTERVAL_SECONDS", default=60)
