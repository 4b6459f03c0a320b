"""Settings for the Tessera coordinator, read from the environment.

The defaults are the embedded setup: SQLite and files under ``var/``, and dramatiq's
in-memory broker with a worker inside the web process. Production sets ``DATABASE_URL``,
``BROKER_URL`` and ``SECRET_KEY`` (see docs/operators.md).
"""

import contextlib
import os
import re
import urllib.parse
from pathlib import Path

import environ

from coordinator.core.log_format import JSON_FORMATTER
from coordinator.core.storage_url import default_storage_settings

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# The default is for development only and is not refused at start: production must set
# SECRET_KEY (`manage.py check --deploy` warns, security.W009; docs/security.md).
SECRET_KEY = env.str("SECRET_KEY", default="tessera-insecure-development-key-change-me")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    # First, so that its runserver (which starts the embedded worker) wins over staticfiles'.
    "coordinator.core",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_dramatiq",
    "rest_framework",
    "drf_spectacular",
    "django_prometheus",
    "coordinator.accounts",
    "coordinator.shares",
    "coordinator.work",
    "coordinator.standing",
    "coordinator.validation",
    "coordinator.scheduler",
    "coordinator.science",
    "coordinator.community",
    "coordinator.boinc",
    "coordinator.web",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "coordinator.core.middleware.DatabaseUnavailableMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "coordinator.urls"
LOGIN_URL = "signin"
LOGIN_REDIRECT_URL = "account"
LOGOUT_REDIRECT_URL = "status"
WSGI_APPLICATION = "coordinator.wsgi.application"

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

# --- Database -------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'tessera.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes SQLite's write lock when a transaction starts, so two requests
    # never both read and then race to write; WAL lets readers go on meanwhile.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not shared-cache memory, so that tests with worker threads lock like production.
    # One file per test run, so parallel runs on one checkout do not collide.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-tessera-{os.getpid()}.sqlite3")}
    VAR_DIR.mkdir(exist_ok=True)
else:
    _PREPARE_NEVER_UNASKED = 2**31 - 1
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    # A kept connection is checked before each request reuses it: after a database restart
    # the first request gets a new connection instead of an error. The backend is Django's,
    # checking without a round trip where the socket shows the server is still there.
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "coordinator.core.postgres"
    # psycopg prepares only what asks to be (coordinator.core.prepared: the hot path's fixed
    # statements); without a threshold it would prepare nothing, even when asked.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", _PREPARE_NEVER_UNASKED)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Files ----------------------------------------------------------------------------
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")
# Inputs, outputs, bundles and results: local files (the default) or an S3 bucket.
STORAGE_URL = env.str("STORAGE_URL", default="")
STORAGES = {
    "default": default_storage_settings(STORAGE_URL),
    # Served by whitenoise from the web process (no separate static server needed).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # also serve app static files when collectstatic has not run
with contextlib.suppress(OSError):  # whitenoise warns about a missing STATIC_ROOT; a read-only disk is fine
    Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
# The project's Ed25519 signing key (seals the credit ledger): a file outside the database,
# made by `manage.py keys create` (see coordinator/core/keys.py).
PROJECT_KEY_FILE = env.path("PROJECT_KEY_FILE", default=VAR_DIR / "project-signing.key")
# The BOINC code-signing key (coordinator.boinc.keys): RSA-1024, as stock BOINC clients need,
# kept apart from the Ed25519 key; its public half may be given instead to processes without it.
BOINC_KEY_FILE = env.path("BOINC_KEY_FILE", default=VAR_DIR / "boinc-code-sign.pem")
BOINC_PUBLIC_KEY = env.str("BOINC_PUBLIC_KEY", default="").replace("\\n", "\n")
# Outputs BOINC clients are still uploading (coordinator.boinc.transfers): whole, they go to storage.
BOINC_UPLOAD_DIR = env.path("BOINC_UPLOAD_DIR", default=VAR_DIR / "boinc-uploads")
# Web processes need only the public half: set it here to keep the private key file off them.
PROJECT_PUBLIC_KEY = env.str("PROJECT_PUBLIC_KEY", default="")
# What `GET /api/v1/project` tells clients as they attach.
PROJECT_NAME = env.str("PROJECT_NAME", default="Tessera")
# Where `manage.py build_client` puts the client's wheel that /client serves, with its hash.
CLIENT_WHEEL_DIR = env.path("CLIENT_WHEEL_DIR", default=VAR_DIR / "client")
# Preferences the project suggests to its clients (JSON); a volunteer's own settings win.
SUGGESTED_PREFERENCES = env.json("SUGGESTED_PREFERENCES", default={})
# The periodic sweep seals the ledger's head at most this often (an export always seals).
LEDGER_SEAL_SECONDS = env.int("LEDGER_SEAL_SECONDS", default=300)

# --- Science: batches ----------------------------------------------------------------
# Largest parameter file (JSON or CSV) a scientist may upload.
BATCH_PARAMETER_FILE_MAX_BYTES = env.int("BATCH_PARAMETER_FILE_MAX_BYTES", default=5 * 1024 * 1024)
# Days after a batch finishes before its units' inputs and outputs are deleted (the
# assimilated result stays).
BATCH_RETENTION_DAYS = env.int("BATCH_RETENTION_DAYS", default=30)

# --- Background work (dramatiq) ------------------------------------------------------
# memory:// is dramatiq's in-process broker; the embedded runserver starts a worker and
# the periodic sweeps beside it. amqp:// and redis:// select the real brokers.
BROKER_URL = env.str("BROKER_URL", default="memory://")
_DRAMATIQ_MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
    "coordinator.core.warmup.WarmStorage",
]
if BROKER_URL.startswith("memory://"):
    DRAMATIQ_BROKER = {"BROKER": "dramatiq.brokers.stub.StubBroker", "OPTIONS": {}}
elif BROKER_URL.startswith("redis"):
    # Every key under one prefix, so the broker can share a Redis with other programs.
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        "OPTIONS": {"url": BROKER_URL, "namespace": env.str("BROKER_NAMESPACE", default="tessera")},
    }
elif BROKER_URL.startswith("amqp"):
    # confirm_delivery: a publish returns only once RabbitMQ has the message (and a deleted
    # queue is declared again). The heartbeat finds dead connections; the blocked timeout
    # keeps a publish from hanging while RabbitMQ blocks publishers (memory or disk alarm).
    # Parameters already in the URL win.
    _amqp = urllib.parse.urlsplit(BROKER_URL)
    _amqp_query = {
        "heartbeat": env.str("BROKER_HEARTBEAT_SECONDS", default="60"),
        "blocked_connection_timeout": "30",
        **dict(urllib.parse.parse_qsl(_amqp.query)),
    }
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.rabbitmq.RabbitmqBroker",
        "OPTIONS": {
            "url": _amqp._replace(query=urllib.parse.urlencode(_amqp_query)).geturl(),
            "confirm_delivery": True,
        },
    }
else:
    raise environ.ImproperlyConfigured(
        f"BROKER_URL must be memory://, redis://… or amqp://…, not {BROKER_URL!r}"
    )
DRAMATIQ_BROKER["MIDDLEWARE"] = _DRAMATIQ_MIDDLEWARE
DRAMATIQ_AUTODISCOVER_MODULES = ["tasks"]
EMBEDDED_WORKER = BROKER_URL.startswith("memory://")
# How often the periodic sweeps (transitioner, deadlines, nonce purge) are enqueued: by the
# embedded runtime, or with a real broker by the one `manage.py run_scheduler` process.
SWEEP_INTERVAL_SECONDS = env.float("SWEEP_INTERVAL_SECONDS", default=5.0)

# --- The volunteer protocol ----------------------------------------------------------
TESSERA = {
    # A signed request's timestamp may be this far from the coordinator's clock.
    "SIGNATURE_MAX_SKEW_SECONDS": env.int("SIGNATURE_MAX_SKEW_SECONDS", default=300),
    # Inputs and outputs up to this size travel inside the scheduler RPC itself.
    "INLINE_BYTES_MAX": env.int("INLINE_BYTES_MAX", default=4096),
    # Largest JSON body a host may send; file uploads have their own limit per app version.
    "REQUEST_BODY_MAX": env.int("REQUEST_BODY_MAX", default=1024 * 1024),
    # Upper bound on any app version's output limit: no upload is read past this.
    "OUTPUT_BYTES_CEILING": env.int("OUTPUT_BYTES_CEILING", default=64 * 1024 * 1024),
    "MAX_TASKS_PER_RPC": env.int("MAX_TASKS_PER_RPC", default=100),
    "MAX_REPORTS_PER_RPC": env.int("MAX_REPORTS_PER_RPC", default=500),
    # Daily quota per host and app version (BOINC's max_jobs_per_day): a new host starts at
    # NEW_HOST_DAILY_QUOTA; x2 on a valid result up to DEFAULT_DAILY_QUOTA, -1 on an error, 1
    # when caught. A volunteer caught within CAUGHT_MEMORY_DAYS starts new hosts at 1.
    "DEFAULT_DAILY_QUOTA": env.int("DEFAULT_DAILY_QUOTA", default=2000),
    "NEW_HOST_DAILY_QUOTA": env.int("NEW_HOST_DAILY_QUOTA", default=10),
    "CAUGHT_MEMORY_DAYS": env.int("CAUGHT_MEMORY_DAYS", default=30),
    # Tasks in progress at once (BOINC's max_jobs_in_progress): per core and per host, and
    # per volunteer whatever number of hosts it registers.
    "MAX_IN_PROGRESS_PER_CPU": env.int("MAX_IN_PROGRESS_PER_CPU", default=8),
    "MAX_IN_PROGRESS_PER_GPU": env.int("MAX_IN_PROGRESS_PER_GPU", default=8),
    "MAX_IN_PROGRESS_PER_HOST": env.int("MAX_IN_PROGRESS_PER_HOST", default=200),
    "MAX_IN_PROGRESS_PER_VOLUNTEER": env.int("MAX_IN_PROGRESS_PER_VOLUNTEER", default=500),
    # Work a host may hold waiting to start, in seconds of its whole computer, beyond a task
    # for each free core (scheduler.buffer; BOINC's max_wus_in_progress, in time): a task
    # queued behind others, or held by a host that goes off, is what keeps a batch waiting.
    "WORK_BUFFER_SECONDS": env.float("WORK_BUFFER_SECONDS", default=60.0),
    # How often a host gets a version of an app it has not measured yet, instead of the fastest
    # it has (docs/platforms.md): 1 measures every version first, 0 never explores.
    "VERSION_EXPLORE_PROBABILITY": env.float("VERSION_EXPLORE_PROBABILITY", default=0.1),
    # What a host may claim to be, and how many hosts a volunteer may register a day.
    "MAX_HOST_CPUS": env.int("MAX_HOST_CPUS", default=256),
    "MAX_HOST_FLOPS": env.float("MAX_HOST_FLOPS", default=5e10),  # per core
    # Floating-point operations one unit of wasm fuel counts as, for credit (docs/validation.md).
    "FLOPS_PER_FUEL": env.float("FLOPS_PER_FUEL", default=1.0),
    "MAX_HOSTS_PER_DAY": env.int("MAX_HOSTS_PER_DAY", default=10),
    # An established host (its agreement earns others trust; it settles disputes): this old,
    # with this many valid results that an unrelated host agreed with.
    "ESTABLISHED_AGE_SECONDS": env.int("ESTABLISHED_AGE_SECONDS", default=24 * 3600),
    "ESTABLISHED_MIN_VALID": env.int("ESTABLISHED_MIN_VALID", default=10),
    # A dispute that no established host settled within this many seconds is open to any host
    # unrelated to the unit's holders; its verdict then punishes nobody and is audited later.
    "DISPUTE_WAIT_SECONDS": env.int("DISPUTE_WAIT_SECONDS", default=3600),
    # Tail acceleration (docs/batches.md): once this share of a batch's units are finished,
    # a replica out longer than TAIL_OVERDUE_FACTOR times its host's usual turnaround (or,
    # unmeasured, TAIL_UNMEASURED_SHARE of its time to the deadline) gets a backup.
    "TAIL_FRACTION": env.float("TAIL_FRACTION", default=0.9),
    "TAIL_OVERDUE_FACTOR": env.float("TAIL_OVERDUE_FACTOR", default=2.0),
    "TAIL_UNMEASURED_SHARE": env.float("TAIL_UNMEASURED_SHARE", default=0.5),
    # Once this share is finished, every replica of the batch still out gets a backup at once.
    "TAIL_FINAL_FRACTION": env.float("TAIL_FINAL_FRACTION", default=0.99),
    # A reliable host (BOINC's reliable_*): this many valid results in a row, and a usual
    # turnaround on the version of at most RELIABLE_MAX_TURNAROUND seconds. Reissues and tail
    # work wait for one ACCELERATED_WAIT_SHARE of their unit's delay bound, at most
    # ACCELERATED_WAIT_SECONDS; its deadline is then RELIABLE_DEADLINE_SHARE of the delay bound.
    "RELIABLE_MIN_CONSECUTIVE_VALID": env.int("RELIABLE_MIN_CONSECUTIVE_VALID", default=5),
    "RELIABLE_MAX_TURNAROUND": env.float("RELIABLE_MAX_TURNAROUND", default=24 * 3600.0),
    "RELIABLE_DEADLINE_SHARE": env.float("RELIABLE_DEADLINE_SHARE", default=0.5),
    "RELIABLE_MIN_AVAILABILITY": env.float("RELIABLE_MIN_AVAILABILITY", default=0.9),
    "ACCELERATED_WAIT_SECONDS": env.int("ACCELERATED_WAIT_SECONDS", default=300),
    "ACCELERATED_WAIT_SHARE": env.float("ACCELERATED_WAIT_SHARE", default=0.1),
    # Fair share (docs/batches.md): shares are ranked by the work sent for them in the last
    # FAIR_SHARE_WINDOW_SECONDS against their weight; a scientist's own share starts at
    # FAIR_SHARE_DEFAULT_WEIGHT; claims add their use to one of FAIR_SHARE_SLOTS rows a minute.
    "FAIR_SHARE_WINDOW_SECONDS": env.int("FAIR_SHARE_WINDOW_SECONDS", default=600),
    "FAIR_SHARE_DEFAULT_WEIGHT": env.int("FAIR_SHARE_DEFAULT_WEIGHT", default=100),
    "FAIR_SHARE_SLOTS": env.int("FAIR_SHARE_SLOTS", default=8),
    "FAIR_SHARE_KEEP_DAYS": env.int("FAIR_SHARE_KEEP_DAYS", default=2),
    # Down for maintenance: when set, every scheduler request (ours and BOINC's) is answered
    # with this message and asked to come back in MAINTENANCE_RETRY_SECONDS; nothing changes.
    "MAINTENANCE": env.str("MAINTENANCE", default=""),
    "MAINTENANCE_RETRY_SECONDS": env.int("MAINTENANCE_RETRY_SECONDS", default=1800),
    # Whether anyone may make an account (the sign-up API, and BOINC's create_account.php).
    "SIGNUP_OPEN": env.bool("SIGNUP_OPEN", default=True),
    # Clients older than this (e.g. 0.2.0) may not register hosts nor call the scheduler, and
    # are told how to upgrade (BOINC's min_core_client_version); empty: any client may.
    "MIN_CLIENT_VERSION": env.str("MIN_CLIENT_VERSION", default=""),
    # Accounts signed up within the same window of this many seconds are related (0: off).
    "SIGNUP_BURST_SECONDS": env.int("SIGNUP_BURST_SECONDS", default=60),
    # Replicas are queued by blocks of this many consecutive units, in random order within one.
    "DISPATCH_BLOCK_UNITS": env.int("DISPATCH_BLOCK_UNITS", default=2048),
    # When to call again: soon while there is work, later when there is none.
    "RPC_DELAY_WITH_WORK": env.int("RPC_DELAY_WITH_WORK", default=5),
    "RPC_DELAY_NO_WORK": env.int("RPC_DELAY_NO_WORK", default=300),
    # How long a host's presigned upload policy lasts: it asks for one just before uploading.
    "UPLOAD_POLICY_SECONDS": env.int("UPLOAD_POLICY_SECONDS", default=3600),
}
if TESSERA["MIN_CLIENT_VERSION"] and not re.fullmatch(
    r"\d{1,6}(\.\d{1,6}){0,3}", TESSERA["MIN_CLIENT_VERSION"]
):
    raise environ.ImproperlyConfigured(
        f"MIN_CLIENT_VERSION must be a version like 0.2.0, not {TESSERA['MIN_CLIENT_VERSION']!r}"
    )
DATA_UPLOAD_MAX_MEMORY_SIZE = TESSERA["OUTPUT_BYTES_CEILING"]

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PARSER_CLASSES": ["coordinator.core.parsers.SafeJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "coordinator.core.api_errors.handle_api_exception",
    "DEFAULT_THROTTLE_RATES": {
        "signup": env.str("THROTTLE_SIGNUP", default="20/hour"),
        "token": env.str("THROTTLE_TOKEN", default="30/hour"),
        # Signed requests per host (scheduler RPC, upload policies): a client calls every few seconds at most.
        "host": env.str("THROTTLE_HOST", default="120/minute"),
    },
    "UNAUTHENTICATED_USER": None,
}
# Proxies whose X-Forwarded-For names the client for limits per address (gunicorn's setting,
# read the same way; "*" trusts every peer): anyone else's header is ignored. None by
# default, not even the loopback: without a proxy in front (`make run`), anyone on the
# machine could otherwise send a new address with each sign-up. deploy/ sets it.
FORWARDED_ALLOW_IPS = env.list("FORWARDED_ALLOW_IPS", default=[])
SPECTACULAR_SETTINGS = {
    "TITLE": "Tessera coordinator API",
    "DESCRIPTION": (
        "Volunteer-computing coordinator. Hosts sign every request with their Ed25519 key "
        "(headers X-Tessera-Host, X-Tessera-Timestamp, X-Tessera-Nonce, X-Tessera-Signature)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "coordinator.core.openapi.document_unsupported_media_type",
        "coordinator.core.openapi.document_database_unavailable",
    ],
}

# Rate limits live in the cache: set CACHE_URL=redis://… when several processes serve, so they share it.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
# django-environ reads ?key_prefix= in lower case; Django's caches look for KEY_PREFIX.
if "key_prefix" in CACHES["default"]:
    CACHES["default"]["KEY_PREFIX"] = CACHES["default"].pop("key_prefix")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# LOG_FORMAT=json: one JSON object a line (python-json-logger), for log collectors.
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": JSON_FORMATTER,
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "text"}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
