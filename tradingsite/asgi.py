"""ASGI entry point: HTTP through Django; the websocket router is ready for live updates."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
# Under ASGI Django runs each request's sync code in a thread of its own, and persistent
# connections are per thread: with CONN_MAX_AGE > 0 a web process under load opens a connection
# per request thread until PostgreSQL refuses more ("too many clients"). Web processes close
# their connection after each request; workers keep theirs (settings default).
os.environ.setdefault("CONN_MAX_AGE", "0")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from tradingsite.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
