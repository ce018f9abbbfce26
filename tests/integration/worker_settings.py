"""Settings of the Celery worker the integration tests start: the project's, with waits
shrunk so a test of faults and kills ends in seconds."""

import os

from connectadmin.settings import *  # noqa: F403

if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):  # noqa: F405
    # A worker killed with SIGKILL leaves its task unacknowledged in Redis; it comes back
    # after the visibility timeout (6 h in production), here after a few seconds unless a
    # test asks for production's (to see the sweep, not the broker, resume a send).
    # RabbitMQ needs nothing shrunk: it hands a dead worker's task out again at once.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("TEST_VISIBILITY_TIMEOUT", "4")),
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
SIGNALS_SEND_RETRY_BUDGET_SECONDS = 20
SIGNALS_SEND_BACKOFF_SECONDS = 0.05
SIGNALS_SEND_BACKOFF_CAP_SECONDS = 0.5
CONNECT_TIMEOUTS = {**CONNECT_TIMEOUTS, "read": 5}  # noqa: F405
# Tasks a worker (or beat) sends go to the test's own queue, which its workers consume.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("TEST_CELERY_QUEUE", "celery")
# The alerts watchdog looks only in the tests that ask for it (each worker of every other
# test would report the workers earlier tests killed).
ALERT_WATCH_SECONDS = int(os.environ.get("ALERT_WATCH_SECONDS", "0"))
