"""connectadmin settings.

Every value comes from the environment with an embedded development default, so `make run`
works with no configuration: SQLite and a file-system Celery broker under var/.
DATABASE_URL and CELERY_BROKER_URL switch to PostgreSQL and RabbitMQ or Redis (production, CI).
"""

import json
import os
import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
import django_stubs_ext

from connectadmin import keyfile
from connectadmin.env import (
    SettingError,
    env_bool,
    env_int,
    env_list,
    env_str,
    gzip_max_inflated_bytes,
)
from connectadmin.secrets import validate_keys

# Lets classes such as ModelForm[Model] be subscripted at run time, as the type hints do.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CONNECTADMIN_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Keys: from the environment, else from the data folder's keys file that `make run` makes
# once (connectadmin.keyfile); neither stops the process saying how to make them.
_kept_keys: dict[str, object] | None = None
if not (os.environ.get("DJANGO_SECRET_KEY") and os.environ.get("FIELD_ENCRYPTION_KEYS")):
    try:
        _kept_keys = keyfile.read(VAR_DIR)
    except keyfile.NoKeys as exc:
        raise SettingError(str(exc)) from None
SECRET_KEY = env_str("DJANGO_SECRET_KEY", str((_kept_keys or {}).get("secret_key", "")))
# Off unless asked for: `make run` behaves as production does (the product's own error
# pages, static files through WhiteNoise). DJANGO_DEBUG=1 shows Django's debug pages.
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Before staticfiles: runserver leaves static files to WhiteNoise, with DEBUG on too.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_celery_beat",
    "template_partials",
    "axes",
    "csp",
    "connectadmin.apps.ConnectadminConfig",
    "signals_app",
    "exports_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "signals_app.audit_hooks.AuditAddressMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into its own answer.
    "axes.middleware.AxesMiddleware",
]

# --- hardening ---------------------------------------------------------------------------
# Sign-in throttling (django-axes): SIGNIN_ATTEMPTS wrong passwords in a row for one user
# name from one address are answered as usual; the next one locks sign-in for that user
# from there for SIGNIN_LOCKOUT_MINUTES, whatever password comes.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("SIGNIN_ATTEMPTS", 10, minimum=1) + 1
AXES_COOLOFF_TIME = timedelta(minutes=env_int("SIGNIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_IPWARE_PROXY_COUNT = env_int("AXES_PROXY_COUNT", 0, minimum=0)  # proxies in front

# Content-Security-Policy (django-csp): the app's own scripts, styles, images and fonts
# only; no inline script. Inline style attributes (a progress bar's width) are allowed,
# style elements are not.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-elem": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# HTTPS settings, each from the environment: on behind TLS in production, off for `make
# run` on http://127.0.0.1. `check --deploy` is clean with the production values.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
if env_bool("SECURE_PROXY_SSL_HEADER", False):  # a TLS proxy says https in this header
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_HOURS", 12, minimum=1) * 3600
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", False)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

ROOT_URLCONF = "connectadmin.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

WSGI_APPLICATION = "connectadmin.wsgi.application"
ASGI_APPLICATION = "connectadmin.asgi.application"

_database_url = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'connectadmin.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
except Exception as exc:  # dj-database-url raises several types for a bad URL
    _shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", _database_url)  # hide the password
    raise SettingError(f"DATABASE_URL={_shown!r} cannot be used: {exc}") from None
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # SQLite serves the web process and a worker at once: wait for locks rather than fail.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves STATIC_ROOT, filled by `collectstatic` (`manage.py devstack` runs it
# at start). With DEBUG on it reads static/ on every request instead, so edits show at once.
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing folder

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"

# Secrets at rest (Connect API keys, SSH private keys): MultiFernet over a comma-separated
# list of Fernet keys, newest first, so keys can be rotated without losing old values.
_kept_fernet = (_kept_keys or {}).get("field_encryption_keys") or []
FIELD_ENCRYPTION_KEYS = env_list(
    "FIELD_ENCRYPTION_KEYS",
    [str(key) for key in _kept_fernet] if isinstance(_kept_fernet, list) else [],
)
validate_keys(FIELD_ENCRYPTION_KEYS)  # a malformed key stops start-up, not the first save

# Celery: a broker that needs no server by default (kombu's file-system transport).
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("in", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir / "in"),
        "data_folder_out": str(_broker_dir / "in"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Longer than any task may run, so a task acknowledged late is never delivered twice
    # while it is still running. It is also how long a killed worker's task waits before
    # Redis hands it out again (the sweeps of CELERY_BEAT_SCHEDULE resume sends sooner).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600, minimum=60)
    }
elif CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    # RabbitMQ, the production broker that loses nothing: a dead worker's connection closes
    # and RabbitMQ hands its unacknowledged task to another worker at once. Quorum queues
    # are durable and replicated (they survive a broker restart); with publisher confirms
    # a publish returns only once RabbitMQ holds the message.
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = "quorum"
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True  # no global QoS: quorum queues refuse it
    # A countdown on a quorum queue goes through Celery's native delayed delivery (the
    # celery_delayed_* exchanges and queues a worker declares as it starts), which routes
    # through topic exchanges only: on a direct one the worker would hold the task instead.
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE = "topic"
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
else:
    raise SettingError(
        f"CELERY_BROKER_URL={CELERY_BROKER_URL!r} is not supported; use amqp://user:password"
        "@host:port/vhost (RabbitMQ), redis://host:port/db, or leave it unset for the "
        "built-in file-system broker"
    )
# The vendors' rate limits (Attentive: requests per second per token) are held across every
# worker process and machine in Redis (connectadmin.ratelimit): RATE_LIMIT_REDIS_URL, else
# REDIS_URL, else the Celery broker when it is Redis. With none (the embedded default) the
# limit is kept in files under VAR_DIR, which holds across the processes of one machine.
RATE_LIMIT_REDIS_URL = (
    env_str("RATE_LIMIT_REDIS_URL", "")
    or env_str("REDIS_URL", "")
    or (CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "")
)
if RATE_LIMIT_REDIS_URL and not RATE_LIMIT_REDIS_URL.startswith(
    ("redis://", "rediss://", "unix://")
):
    raise SettingError(
        f"RATE_LIMIT_REDIS_URL={RATE_LIMIT_REDIS_URL!r} is not a Redis URL; use "
        "redis://host:port/db, or leave it unset"
    )
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 4 * 3600, minimum=60)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_RESULT_BACKEND = None
# Periodic tasks (celery beat with django_celery_beat's DatabaseScheduler, which copies
# this schedule into its tables at start): resume sends whose worker died (on Redis,
# SIGKILL leaves the task unacknowledged until the visibility timeout, hours by default).
CELERY_BEAT_SCHEDULE = {
    "resume-stalled-sends": {
        "task": "signals_app.tasks.resume_stalled_sends",
        "schedule": 15.0,
        "options": {"expires": 14},
    },
    "resume-export-watches": {
        "task": "exports_app.tasks.resume_export_watches",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "purge-export-archive": {
        "task": "exports_app.tasks.purge_export_archive",
        "schedule": 3600.0,
        "options": {"expires": 3500},
    },
    "health-heartbeat": {
        "task": "connectadmin.tasks.record_heartbeat",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
    "send-due-alerts": {
        "task": "connectadmin.tasks.deliver_alerts",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
}

# `manage.py devstack` (what `make run` ends with) and the local sandbox it starts; the demo
# Connect accounts created by `seed_demo` point at SANDBOX_HTTP_PORT.
WEB_PORT = env_int("WEB_PORT", 8000, minimum=1, maximum=65535)
SANDBOX_HTTP_PORT = env_int("SANDBOX_HTTP_PORT", 8765, minimum=1, maximum=65535)
SANDBOX_SFTP_PORT = env_int("SANDBOX_SFTP_PORT", 2222, minimum=1, maximum=65535)
SANDBOX_DATA_DIR = VAR_DIR / "sandbox"

# Imports: uploaded files are kept under generated names in IMPORTS_DIR.
IMPORTS_DIR = Path(env_str("IMPORTS_DIR", str(VAR_DIR / "imports")))
IMPORT_MAX_UPLOAD_BYTES = env_int("IMPORT_MAX_UPLOAD_BYTES", 1024**3, minimum=1024)
# Exports: files fetched from SFTP are kept in EXPORTS_DIR, after Connect deletes them (28
# days), for EXPORT_ARCHIVE_DAYS; reading one stops past EXPORT_MAX_INFLATED_BYTES.
EXPORTS_DIR = Path(env_str("EXPORTS_DIR", str(VAR_DIR / "exports")))
EXPORT_ARCHIVE_DAYS = env_int("EXPORT_ARCHIVE_DAYS", 365, minimum=1)
# Both kinds of files go through Django's storage API (connectadmin.files), so web processes
# and workers on separate machines share them. By default they stay in IMPORTS_DIR and
# EXPORTS_DIR, folders on this machine (or a shared volume mounted there). FILES_STORAGE
# names another storage class for both, e.g. storages.backends.s3.S3Storage (an object
# store, through django-storages), FILES_STORAGE_OPTIONS its options as a JSON object; each
# then keeps its files under its own prefix (option "location"): imports/ and exports/.
# django-storages' S3 storage reads an object whole into memory before its first byte:
# connectadmin.s3's, which streams it and bounds uploads' memory, stands in for it.
_files_storage = env_str("FILES_STORAGE", "")
if _files_storage in ("storages.backends.s3.S3Storage", "storages.backends.s3boto3.S3Boto3Storage"):
    _files_storage = "connectadmin.s3.S3Storage"
try:
    _files_options = json.loads(env_str("FILES_STORAGE_OPTIONS", "{}"))
except ValueError as exc:
    raise SettingError(f"FILES_STORAGE_OPTIONS is not a JSON object: {exc}") from None
if not isinstance(_files_options, dict):
    raise SettingError("FILES_STORAGE_OPTIONS is not a JSON object")


def _files(location: str, setting: str) -> dict[str, object]:
    if not _files_storage:
        return {"BACKEND": "connectadmin.files.FolderStorage", "OPTIONS": {"setting": setting}}
    return {"BACKEND": _files_storage, "OPTIONS": {**_files_options, "location": location}}


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "imports": _files("imports", "IMPORTS_DIR"),
    "exports": _files("exports", "EXPORTS_DIR"),
}
EXPORT_MAX_INFLATED_BYTES = env_int("EXPORT_MAX_INFLATED_MB", 16 * 1024, minimum=1) * 1024**2
# How long a job is watched for its file before it is called failed.
EXPORT_WATCH_HOURS = env_int("EXPORT_WATCH_HOURS", 12, minimum=1)
# Uploads go to a temporary file from the first byte: the web process never holds a file.
FILE_UPLOAD_MAX_MEMORY_SIZE = 0
FILE_UPLOAD_TEMP_DIR = str(VAR_DIR / "uploads-in-progress")
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)

# Sending to Connect (SPEC §6): batches of at most 500, transient failures retried with
# exponential backoff and full jitter, honouring Retry-After up to a bound.
SIGNALS_BATCH_SIZE = env_int("SIGNALS_BATCH_SIZE", 500, minimum=1, maximum=500)
SIGNALS_SEND_RETRY_BUDGET_SECONDS = env_int("SIGNALS_SEND_RETRY_BUDGET_SECONDS", 1800, minimum=0)
SIGNALS_SEND_BACKOFF_SECONDS = env_int("SIGNALS_SEND_BACKOFF_MS", 500, minimum=0) / 1000
SIGNALS_SEND_BACKOFF_CAP_SECONDS = env_int("SIGNALS_SEND_BACKOFF_CAP_MS", 120_000, minimum=0) / 1000
SIGNALS_SEND_RETRY_AFTER_MAX_SECONDS = env_int("SIGNALS_SEND_RETRY_AFTER_MAX_SECONDS", 300)
# The sending window: createSignals calls of one import in flight at once, whatever the
# number of workers (each Connect account also has its own cap, set on its page).
SIGNALS_SEND_WINDOW = env_int("SIGNALS_SEND_WINDOW", 8, minimum=1, maximum=64)
# A lane of a send without a live run, quiet for this long, is enqueued again by the
# sweep (resume_stalled_sends, every 15 s); a run shows life every few seconds.
SIGNALS_SEND_LANE_QUIET_SECONDS = env_int("SIGNALS_SEND_LANE_QUIET_SECONDS", 30, minimum=5)
# Sending to Attentive (SPEC §6): at most this many createCustomEvent calls a second per
# API key (Attentive allows 150 and answers 429 beyond), held across every worker; the
# default of a new Attentive account, which may set its own on its settings page.
ATTENTIVE_RATE_LIMIT = env_int("ATTENTIVE_RATE_LIMIT", 150, minimum=1, maximum=1000)
# Poison work ends: a task whose work dies this many times in a row is given up.
SIGNALS_TASK_MAX_STARTS = env_int("SIGNALS_TASK_MAX_STARTS", 3, minimum=1)
# Reading an import's file runs in a child process with these limits (services.validation):
# memory beyond the worker's own size, processor time, and the time the worker waits.
SIGNALS_VALIDATION_MEMORY_BYTES = (
    env_int("SIGNALS_VALIDATION_MEMORY_MB", 2048, minimum=64) * 1024**2
)
SIGNALS_VALIDATION_CPU_SECONDS = env_int("SIGNALS_VALIDATION_CPU_SECONDS", 15 * 60, minimum=1)
SIGNALS_VALIDATION_MAX_SECONDS = env_int("SIGNALS_VALIDATION_MAX_SECONDS", 30 * 60, minimum=1)
# What one import's findings and rejected records may take in the database: a base plus a
# multiple of the file's size; the counts stay exact, the lists are shortened past it.
SIGNALS_STORED_FINDINGS_BASE_BYTES = (
    env_int("SIGNALS_STORED_FINDINGS_BASE_MB", 16, minimum=1) * 10**6
)
SIGNALS_STORED_FINDINGS_PER_FILE_BYTE = env_int("SIGNALS_STORED_FINDINGS_PER_FILE_BYTE", 4)
# httpx timeouts in seconds; a read timeout leaves a batch's outcome unknown.
CONNECT_TIMEOUTS = {
    "connect": env_int("CONNECT_CONNECT_TIMEOUT", 5, minimum=1),
    "read": env_int("CONNECT_READ_TIMEOUT", 60, minimum=1),
    "write": env_int("CONNECT_WRITE_TIMEOUT", 30, minimum=1),
    "pool": env_int("CONNECT_POOL_TIMEOUT", 5, minimum=1),
}

# Validation of uploaded and CLI files.
SIGNALS_GZIP_MAX_INFLATED_BYTES = gzip_max_inflated_bytes()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # A refused request (403, 400) is one warning line: Django attaches its traceback.
    "filters": {"client_errors_in_one_line": {"()": "connectadmin.logs.ClientErrorsInOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django.request": {"filters": ["client_errors_in_one_line"]},
        "axes": {"level": "WARNING"},  # a line per sign-in otherwise; lockouts still show
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Health: /healthz and the Health page (connectadmin.health) -----------------------
# A worker or the scheduler without a sign of life for this long is reported silent (beat
# sends the heartbeat task every 30 s, see CELERY_BEAT_SCHEDULE; connectadmin.heartbeats).
HEALTH_SILENT_SECONDS = env_int("HEALTH_SILENT_SECONDS", 300, minimum=60)
# Less free space than this on the disk of VAR_DIR, EXPORTS_DIR or IMPORTS_DIR is reported
# (an upload may be up to IMPORT_MAX_UPLOAD_BYTES, 1 GiB by default).
HEALTH_DISK_MIN_FREE_MB = env_int("HEALTH_DISK_MIN_FREE_MB", 1024, minimum=0)

# --- E-mail (invitations, alerts) -------------------------------------------------------
# With EMAIL_HOST set, mail goes out over SMTP; without it (make run, a laptop) each message
# is written as a file under VAR_DIR/outbox, where it can be read, instead of failing on a
# mail server that is not there. EMAIL_BACKEND overrides both.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", EMAIL_PORT == 587)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", EMAIL_PORT == 465)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "outbox"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "connectadmin <connectadmin@localhost>")
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
# The address people open the app at, for links in e-mails and webhooks.
SITE_URL = env_str("SITE_URL", f"http://127.0.0.1:{WEB_PORT}").rstrip("/")

# --- Alerts (connectadmin.alerts) ----------------------------------------------------------
# At most one message per subject (an account's imports, a schedule, a worker) in this many
# minutes; more failures meanwhile are counted and told in one reminder.
ALERT_REPEAT_MINUTES = env_int("ALERT_REPEAT_MINUTES", 60, minimum=1)
# How often each worker and the scheduler look for silent workers and a silent scheduler
# (HEALTH_SILENT_SECONDS decides when one is silent) and send what waits; 0: never.
ALERT_WATCH_SECONDS = env_int("ALERT_WATCH_SECONDS", 30, minimum=0)
# A message that cannot be delivered is tried again (1, 5, 15, 60 minutes, ...) this often.
ALERT_DELIVERY_ATTEMPTS = env_int("ALERT_DELIVERY_ATTEMPTS", 6, minimum=1)
ALERT_WEBHOOK_TIMEOUT_SECONDS = env_int("ALERT_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
