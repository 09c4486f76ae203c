"""Token authentication with the token and its user read from the reference-data cache: one
query less on every API request. A revoked token or a deactivated user moves the cache's
version in the same transaction (tradingsite/refdata.py), so it is refused from the next
request on, in every process."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from . import refdata


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        model = self.get_model()

        def load() -> Any:
            return model.objects.select_related("user").filter(key=key).first()

        token = refdata.cached(("token", key), load)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return refdata.instance_copy(token.user), token
