"""`manage.py seed_demo`: the instruments, users and account a local demo needs.

Idempotent: a second run changes nothing and keeps the demo trader's token. `make run` echoes
the three lines this prints (and nothing else goes to stdout):

    admin: <user> / <password or (unchanged)>
    trader: demo token <key>
    account: DEMO-1

The admin's password is DEMO_ADMIN_PASSWORD (default "admin" for a new user); an existing
admin keeps its password unless DEMO_ADMIN_PASSWORD is set. Never run this in production.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from orders.books import account_cash_move
from orders.exceptions import ProvisioningError
from orders.provisioning import (
    ROLES,
    InstrumentSpec,
    account_ensure,
    account_grant,
    api_token_ensure,
    groups_ensure,
    instrument_upsert,
    superuser_ensure,
    trader_ensure,
)

D = Decimal


def _instrument(
    symbol: str, asset_class: str, *, lot: str, tick: str, reference: str, quote: str = ""
) -> InstrumentSpec:
    base, _, quote_from_symbol = symbol.partition("_")
    return InstrumentSpec(
        symbol=symbol,
        asset_class=asset_class,
        base_currency=base,
        quote_currency=quote or quote_from_symbol,
        lot_size=D(lot),
        min_quantity=D(lot),
        tick_size=D(tick),
        reference_price=D(reference),
    )


DEMO_INSTRUMENTS: tuple[InstrumentSpec, ...] = (
    _instrument("EUR_USD", "fx", lot="1", tick="0.00001", reference="1.08500"),
    _instrument("GBP_USD", "fx", lot="1", tick="0.00001", reference="1.27000"),
    _instrument("USD_JPY", "fx", lot="1", tick="0.001", reference="150.000"),
    _instrument("AAPL", "equity", lot="1", tick="0.01", reference="190.00", quote="USD"),
    _instrument("MSFT", "equity", lot="1", tick="0.01", reference="420.00", quote="USD"),
    _instrument("BTC_USD", "crypto", lot="0.0001", tick="0.01", reference="65000.00"),
)
DEMO_TRADER = "demo"
DEMO_ACCOUNT = "DEMO-1"
DEMO_ACCOUNT_CURRENCY = "USD"
DEMO_DEPOSIT = Decimal("1000000")
DEFAULT_ADMIN_USER = "admin"
DEFAULT_ADMIN_PASSWORD = "admin"


class Command(BaseCommand):
    help = "Create the demo instruments, admin, trader, account and token (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        admin_user = os.environ.get("DEMO_ADMIN_USER") or DEFAULT_ADMIN_USER
        # An empty variable counts as unset: it never sets an empty password.
        admin_password = os.environ.get("DEMO_ADMIN_PASSWORD") or None
        try:
            with transaction.atomic():
                for spec in DEMO_INSTRUMENTS:
                    instrument_upsert(spec=spec)
                groups_ensure(names=ROLES)
                admin = superuser_ensure(
                    username=admin_user,
                    password=admin_password,
                    default_password=DEFAULT_ADMIN_PASSWORD,
                )
                trader, _ = trader_ensure(username=DEMO_TRADER)
                account, _ = account_ensure(
                    code=DEMO_ACCOUNT, currency=DEMO_ACCOUNT_CURRENCY, name="Demo account"
                )
                account_grant(account=account, user=trader)
                if not account.cash_movements.exists():
                    account_cash_move(
                        account=account,
                        amount=DEMO_DEPOSIT,
                        reason="demo deposit",
                        actor="system:seed_demo",
                    )
                token = api_token_ensure(user=trader)
        except ProvisioningError as error:
            raise CommandError(error.message) from error

        password = admin.password_set if admin.password_set is not None else "(unchanged)"
        self.stdout.write(f"admin: {admin.user.get_username()} / {password}")
        self.stdout.write(f"trader: {DEMO_TRADER} token {token.key}")
        self.stdout.write(f"account: {account.code}")
