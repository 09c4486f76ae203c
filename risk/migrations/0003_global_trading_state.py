from django.db import migrations


def forwards(apps, schema_editor):
    TradingState = apps.get_model("risk", "TradingState")
    TradingState.objects.get_or_create(scope="global", target="", defaults={"mode": "active"})


class Migration(migrations.Migration):
    dependencies = [("risk", "0002_risk_event_append_only")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
