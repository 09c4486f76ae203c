"""The web process: `gunicorn -c python:tradingsite.gunicorn_conf tradingsite.wsgi:application`
(make run, the Dockerfile, docker-compose, make bench).

The HTTP API and the admin are served through WSGI by gunicorn's threaded workers. Measured on
this machine kind, back to back on the bench stack (docs/performance-history.md, "Web
server"), one request costs about half as much there as through Django's ASGI handler under
uvicorn, which adapts every request to a thread of its own: p50 of a health check 1.8-2.5
against 5.0-5.2 ms, a refused order body 5.7-5.9 against 11-12 ms, an accepted order 17-22
against 32-37 ms.
The ASGI application (tradingsite/asgi.py) stays for websockets.

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
