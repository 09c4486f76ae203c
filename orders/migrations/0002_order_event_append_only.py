"""OrderEvent is append-only: on PostgreSQL a trigger refuses UPDATE and DELETE."""

from django.db import migrations

from tradingsite.append_only import append_only


class Migration(migrations.Migration):
    dependencies = [("orders", "0001_initial")]
    operations = [
        append_only(
            "orders_orderevent",
            function="orders_event_append_only",
            trigger="orders_event_no_update_delete",
        )
    ]
