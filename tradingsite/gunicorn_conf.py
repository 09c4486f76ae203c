"""The web process: `gunicorn -c python:tradingsite.gunicorn_conf tradingsite.wsgi:application`
(make run, the Dockerfile, docker-compose, make bench).

The HTTP API and the admin are served through WSGI by gunicorn's threaded workers. Measured on
this machine kind (docs/performance.md, "Web server"), one order POST costs about half as much
there as through Django's ASGI handler under uvicorn, which adapts every request to a thread of
its own: health check 1.5 against 3.6 ms, a refused order body 2.6 against 8.7 ms, an accepted
order 10.5 against 24 ms. The ASGI application (tradingsite/asgi.py) stays for websockets.

Each thread keeps one persistent database connection (CONN_MAX_AGE, health-checked), so a web
deployment holds at most WEB_WORKERS x WEB_THREADS connections.
"""

import os

bind = f"{os.environ.get('WEB_HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
# Trading clients hold their connections (docs/operations.md, "HTTP keep-alive").
keepalive = int(os.environ.get("WEB_KEEPALIVE", "75"))
timeout = 30
graceful_timeout = 20
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
control_socket_disable = True  # several gunicorns may share a machine; gunicornc is unused
