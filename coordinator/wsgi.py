"""WSGI entry point: ``gunicorn coordinator.wsgi``.

Each worker imports this before it takes a request, so what every process pays once is
paid here: the URL resolver's reverse tables, which the first reply with a task would
otherwise build while hosts wait (9 ms in a quiet process; 3 % of the web workers' profile
samples in a ``bench.throughput`` run, whose workers start just before it).
"""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coordinator.settings")
application = get_wsgi_application()
get_resolver().reverse_dict  # noqa: B018  # built now, for this process's default language
