"""WSGI entry point: the HTTP API and the admin (tradingsite/gunicorn_conf.py). Each gunicorn
thread keeps one persistent connection (CONN_MAX_AGE), named fillmore-web in pg_stat_activity.

Once the application and its URLconf are loaded, the objects of start-up (modules, classes,
the URL resolver: ~116,000 of them) are moved out of the garbage collector's sight
(tradingsite/gcfreeze.py). A full collection scanned them all, holding every thread of the
process for ~30 ms each time; with them frozen one takes 3-14 ms (bench stack, 2026-12-04:
docs/performance-history.md)."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from tradingsite.gcfreeze import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
os.environ.setdefault("DB_APPLICATION_NAME", "fillmore-web")
application = get_wsgi_application()
get_resolver().url_patterns  # noqa: B018  (imports every view before the freeze)
freeze_startup_objects("web")
