"""Websocket routes (the live event stream registers here)."""

websocket_urlpatterns: list = []
