"""The version row of the reference-data cache and the triggers that move it on every write to
a cached table (tradingsite/refdata.py)."""

from django.db import migrations

from tradingsite import refdata


def forwards(apps, schema_editor):
    for statement in refdata.create_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


def backwards(apps, schema_editor):
    for statement in refdata.drop_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("risk", "0004_circuit_breakers"),
        ("orders", "0007_list_and_open_order_indexes"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
