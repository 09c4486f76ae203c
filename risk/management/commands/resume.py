"""Manual override after a halt: `manage.py resume --reason "..."`."""

import getpass

from django.core.management.base import BaseCommand, CommandError

from orders.exceptions import ApplicationError
from risk import services
from risk.models import Scope


class Command(BaseCommand):
    help = "Resume trading for a scope (global by default)."

    def add_arguments(self, parser):
        parser.add_argument("--scope", choices=Scope.values, default=Scope.GLOBAL)
        parser.add_argument("--target", default="")
        parser.add_argument("--reason", required=True)

    def handle(self, *args, **options):
        try:
            state = services.trading_resume(
                scope=options["scope"],
                target=options["target"],
                reason=options["reason"],
                actor=f"cli:{getpass.getuser()}",
            )
        except ApplicationError as error:
            raise CommandError(error.message) from error
        where = state.scope if state.scope == Scope.GLOBAL else f"{state.scope} {state.target}"
        self.stdout.write(f"{where}: {state.mode}")
