"""The partial index of open orders is keyed (account, created_at DESC, id DESC) instead of
(account, instrument): GET /orders/?open=true then reads an account's page of open orders
newest first straight from the index, where it read all of them and sorted (27 ms a page with
625 open orders an account on 1,000,000 orders, growing with the open orders). The risk
snapshot's totals and the open count read all of an account's open orders, by the same
prefix; no query looked open orders up by instrument.

As in 0009, plain SQL by name: the new index is created before the old one is dropped, so
the reads always have one. CREATE INDEX scans the table under a write lock (about a second per
million orders on this machine kind); on a large live table, build it first with CREATE INDEX
CONCURRENTLY under the same name and this migration finds it there."""

from django.db import migrations, models

OPEN = [
    "acknowledged",
    "created",
    "partially_filled",
    "pending_cancel",
    "pending_submit",
    "submitted",
    "validated",
]
CONDITION = '"status" IN ({})'.format(", ".join(f"'{status}'" for status in OPEN))


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0010_order_fill_ids_uuid7"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="order", name="order_open_account_instrument"),
                migrations.AddIndex(
                    model_name="order",
                    index=models.Index(
                        condition=models.Q(status__in=OPEN),
                        fields=["account", "-created_at", "-id"],
                        name="order_open_account_created",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql='CREATE INDEX IF NOT EXISTS "order_open_account_created" ON "orders_order" '
                    f'("account_id", "created_at" DESC, "id" DESC) WHERE {CONDITION}',
                    reverse_sql='DROP INDEX IF EXISTS "order_open_account_created"',
                ),
                migrations.RunSQL(
                    sql='DROP INDEX IF EXISTS "order_open_account_instrument"',
                    reverse_sql='CREATE INDEX IF NOT EXISTS "order_open_account_instrument" ON '
                    f'"orders_order" ("account_id", "instrument_id") WHERE {CONDITION}',
                ),
            ],
        ),
    ]
