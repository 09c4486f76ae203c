"""WSGI entry point: the HTTP API and the admin (tradingsite/gunicorn_conf.py). Each gunicorn
thread keeps one persistent connection (CONN_MAX_AGE), named fillmore-web in pg_stat_activity."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
os.environ.setdefault("DB_APPLICATION_NAME", "fillmore-web")
application = get_wsgi_application()
