"""RiskEvent is append-only: on PostgreSQL a trigger refuses UPDATE and DELETE."""

from django.db import migrations

from tradingsite.append_only import append_only


class Migration(migrations.Migration):
    dependencies = [("risk", "0001_initial")]
    operations = [
        append_only(
            "risk_riskevent",
            function="risk_event_append_only",
            trigger="risk_event_no_update_delete",
        )
    ]
