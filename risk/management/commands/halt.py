"""The kill switch from a shell, for when the web is down: `manage.py halt --reason "..."`."""

import getpass

from django.core.management.base import BaseCommand, CommandError

from orders.exceptions import ApplicationError
from risk import services
from risk.models import Scope, TradingMode


class Command(BaseCommand):
    help = "Halt trading for a scope (global by default); optionally cancel and flatten."

    def add_arguments(self, parser):
        parser.add_argument("--scope", choices=Scope.values, default=Scope.GLOBAL)
        parser.add_argument("--target", default="", help="account code, strategy id or symbol")
        parser.add_argument("--reason", required=True)
        parser.add_argument("--reducing", action="store_true", help="reduce-only instead of halted")
        parser.add_argument("--cancel-open-orders", action="store_true")
        parser.add_argument(
            "--flatten",
            action="store_true",
            help="cancel open orders and close positions with market orders",
        )

    def handle(self, *args, **options):
        try:
            result = services.trading_halt(
                scope=options["scope"],
                target=options["target"],
                reason=options["reason"],
                mode=TradingMode.REDUCING if options["reducing"] else TradingMode.HALTED,
                cancel_open_orders=options["cancel_open_orders"],
                flatten=options["flatten"],
                actor=f"cli:{getpass.getuser()}",
            )
        except ApplicationError as error:
            raise CommandError(error.message) from error
        state = result.state
        where = state.scope if state.scope == Scope.GLOBAL else f"{state.scope} {state.target}"
        self.stdout.write(f"{where}: {state.mode} ({state.reason})")
        self.stdout.write(
            f"cancelled {result.cancelled} open orders; "
            f"{len(result.flatten_order_ids)} flatten orders submitted"
        )
