"""The parent foreign key's index holds only the orders that have a parent (`order_parent`,
WHERE parent_id IS NOT NULL): every other order's row versions paid for an entry of NULL.

As in 0008, the foreign key's own index is dropped by name (`DROP INDEX IF EXISTS`) instead of
Django's AlterField, which would drop and re-add the constraint and validate every row under
lock. The new index is built with a plain CREATE INDEX (a table scan under a write lock: about
a second per million orders on this machine kind); on a large live table, build it first with
CREATE INDEX CONCURRENTLY under the same name and this migration finds it there."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0008_drop_redundant_fk_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="order",
                    name="parent",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="children",
                        to="orders.order",
                    ),
                ),
                migrations.AddIndex(
                    model_name="order",
                    index=models.Index(
                        condition=models.Q(parent__isnull=False),
                        fields=["parent"],
                        name="order_parent",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql='DROP INDEX IF EXISTS "orders_order_parent_id_2d691aa5"',
                    reverse_sql='CREATE INDEX IF NOT EXISTS "orders_order_parent_id_2d691aa5" '
                    'ON "orders_order" ("parent_id")',
                ),
                migrations.RunSQL(
                    sql='CREATE INDEX IF NOT EXISTS "order_parent" ON "orders_order" ("parent_id") '
                    'WHERE "parent_id" IS NOT NULL',
                    reverse_sql='DROP INDEX IF EXISTS "order_parent"',
                ),
            ],
        ),
    ]
