"""Gunicorn settings for Tessera's web process, the same in a container and on a plain server.

    gunicorn coordinator.wsgi:application --config deploy/gunicorn.conf.py

Read from the environment: ``PORT`` (default 8000), ``WEB_CONCURRENCY`` (worker processes,
default twice the cores plus one), ``FORWARDED_ALLOW_IPS`` (proxies trusted to say the scheme
and client address, default none, as in coordinator/settings.py), ``PROMETHEUS_MULTIPROC_DIR``
and ``LOG_FORMAT=json``. See docs/deployment.md.
"""

import multiprocessing
import os
import sys
import tempfile
from pathlib import Path

bind = f"0.0.0.0:{os.environ.get('PORT') or '8000'}"
# Sync workers, one request at a time each: the API's requests are short, and hosts move
# large inputs and outputs straight to and from the object storage.
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count() * 2 + 1)
timeout = 60
# On SIGTERM (a rolling restart) a worker finishes the request it has for this long.
graceful_timeout = 30
# A fresh process now and then bounds any slow leak; the jitter keeps workers from
# restarting all at once.
max_requests = 2000
max_requests_jitter = 200
# The heartbeat file on tmpfs: a container's disk may be slow or read-only.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

accesslog = "-"  # stdout
errorlog = "-"  # stderr

# Only these proxies may set X-Forwarded-Proto (https) and X-Forwarded-For. None unless set,
# the loopback included: each deployment behind a proxy names it (compose, Kubernetes, systemd).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")
# Hosts sign the request path, so nothing in front may rewrite it: gunicorn would otherwise
# take SCRIPT_NAME and PATH_INFO from headers sent by a trusted proxy.
forwarder_headers = ""
# gunicornc's control socket wants a writable home folder, which containers and the systemd
# units do not give; nothing here uses it.
control_socket_disable = True

if os.environ.get("LOG_FORMAT") == "json":
    # One JSON object a line, in the application's own format; the access line is the message.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for the format
    from coordinator.core.log_format import JSON_FORMATTER

    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": JSON_FORMATTER},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"},
            "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "json"},
        },
        # gunicorn merges this over its own defaults: replace the root logger's handler too.
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        },
    }


def on_starting(server):
    """Give the workers one folder for their Prometheus figures, emptied at each start.

    Every worker counts its own requests; ``/metrics`` (django-prometheus) adds up the files
    in ``PROMETHEUS_MULTIPROC_DIR``, so a scrape answers for the whole process group. Set it
    to a folder on tmpfs; without it a private temporary folder is made.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="tessera-prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # inherited by the workers
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    """A dead worker's live gauges no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
