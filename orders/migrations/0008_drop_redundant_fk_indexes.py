"""Drop the foreign keys' own indexes that a composite index leading with the same column
already serves (docs/performance-history.md): every order, event and fill written or updated paid for
an index no query needs.

Only the indexes go (`DROP INDEX IF EXISTS`, a brief lock, no table scan). Django's AlterField
would also drop and re-add each foreign key constraint, and re-adding one validates every row
of the table under lock: minutes on a large events table. The names are Django's own,
deterministic from table and column, on PostgreSQL and SQLite alike."""

import django.db.models.deletion
from django.db import migrations, models

# (model, field, table, column, index name)
DROPPED = [
    ("fill", "account", "orders_fill", "account_id", "orders_fill_account_id_7c8c7ed1"),
    ("fill", "order", "orders_fill", "order_id", "orders_fill_order_id_a48e391a"),
    ("order", "account", "orders_order", "account_id", "orders_order_account_id_cf843c80"),
    ("orderevent", "order", "orders_orderevent", "order_id", "orders_orderevent_order_id_b26297f3"),
]
TARGETS = {"account": "orders.account", "order": "orders.order"}
RELATED_NAMES = {"fill": "fills", "order": "orders", "orderevent": "events"}


def _field(model: str, field: str) -> models.ForeignKey:
    return models.ForeignKey(
        db_index=False,
        on_delete=django.db.models.deletion.PROTECT,
        related_name=RELATED_NAMES[model],
        to=TARGETS[field],
    )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0007_list_and_open_order_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name=model, name=field, field=_field(model, field))
                for model, field, _, _, _ in DROPPED
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ("{column}")',
                )
                for _, _, table, column, index in DROPPED
            ],
        ),
    ]
