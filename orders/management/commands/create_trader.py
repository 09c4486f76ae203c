"""`manage.py create_trader NAME --account CODE [--role risk|compliance] [--currency USD]`

Creates (or reuses) the user and the account, grants the account to the user, adds the
role's group and makes sure the user has an API token. Prints only the token on stdout, so a
script can capture it:

    TOKEN=$(python manage.py create_trader alice --account ACC-1)

Running it again prints the same token. What was done goes to stderr.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from orders.exceptions import ProvisioningError
from orders.provisioning import (
    ROLES,
    account_ensure,
    account_grant,
    api_token_ensure,
    trader_ensure,
    user_role_add,
)


class Command(BaseCommand):
    help = "Create or reuse a trader with an account and an API token; prints the token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="user name of the trader")
        parser.add_argument(
            "--account",
            required=True,
            metavar="CODE",
            help="trading account code; created when missing",
        )
        parser.add_argument(
            "--role", choices=ROLES, help="also put the trader in this group (reads every account)"
        )
        parser.add_argument(
            "--currency",
            metavar="CCY",
            help="currency of a new account (default USD); must match an existing account's",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"].strip()
        code: str = options["account"].strip()
        currency: str | None = options["currency"].strip().upper() if options["currency"] else None
        role: str | None = options["role"]
        try:
            with transaction.atomic():
                user, user_created = trader_ensure(username=name)
                account, account_created = account_ensure(code=code, currency=currency)
                account_grant(account=account, user=user)
                if role:
                    user_role_add(user=user, role=role)
                token = api_token_ensure(user=user)
        except ProvisioningError as error:
            raise CommandError(error.message) from error

        self.stderr.write(
            f"trader {name} ({'created' if user_created else 'existing'}), "
            f"account {account.code} {account.currency} "
            f"({'created' if account_created else 'existing'})"
            + (f", role {role}" if role else ""),
            style_func=str,  # information, not an error: no red
        )
        self.stdout.write(token.key)
