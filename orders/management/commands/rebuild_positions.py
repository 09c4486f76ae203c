"""Rebuild positions, cash and realized P&L from deposits and fills alone."""

from django.core.management.base import BaseCommand
from django.db import transaction

from orders.books import books_rebuild
from orders.models import Account, Position


def _books() -> dict:
    positions = {
        (p.account_id, p.instrument_id, p.strategy_id): (
            p.quantity,
            p.average_price,
            p.realized_pnl,
            p.commission,
        )
        for p in Position.objects.all()
    }
    accounts = {a.pk: (a.cash, a.realized_pnl) for a in Account.objects.all()}
    return {"positions": positions, "accounts": accounts}


class _DryRun(Exception):
    pass


class Command(BaseCommand):
    help = "Rebuild the books from fills; with --dry-run, only report what would change."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, **options):
        before = _books()
        try:
            with transaction.atomic():
                replayed = books_rebuild()
                after = _books()
                if options["dry_run"]:
                    raise _DryRun
        except _DryRun:
            pass
        differences = [
            f"{kind} {key}: {before[kind].get(key)} -> {after[kind].get(key)}"
            for kind in ("positions", "accounts")
            for key in sorted(set(before[kind]) | set(after[kind]), key=str)
            if before[kind].get(key) != after[kind].get(key)
        ]
        for line in differences:
            self.stdout.write(line)
        verb = "would change" if options["dry_run"] else "changed"
        self.stdout.write(f"replayed {replayed} fills; {len(differences)} rows {verb}")
