"""ASGI entry point: HTTP through Django; the websocket router is ready for live updates."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
# Under ASGI Django runs each request's sync code in a thread of its own, and connections are
# per thread: with CONN_MAX_AGE > 0 a web process under load opens a connection per request
# thread until PostgreSQL refuses more ("too many clients"). So web processes borrow from a
# pool of at most DB_POOL_MAX_SIZE connections (opened lazily, in each worker process after
# any fork) and give it back at the end of the request; settings then set CONN_MAX_AGE to 0.
# With DB_POOL=0 they open and close a connection per request instead (CONN_MAX_AGE 0 unless
# set). Workers, beat and market data keep one persistent connection (settings defaults).
os.environ.setdefault("DB_POOL", "1")
os.environ.setdefault("CONN_MAX_AGE", "0")
os.environ.setdefault("DB_APPLICATION_NAME", "fillmore-web")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from tradingsite.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
