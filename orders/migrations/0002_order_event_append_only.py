"""OrderEvent is append-only: on PostgreSQL a trigger refuses UPDATE and DELETE.

SQLite (the zero-set-up default) has no such trigger; the application never updates or
deletes events there either, and PostgreSQL is the production book of record."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION orders_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'orders_orderevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER orders_event_no_update_delete
    BEFORE UPDATE OR DELETE ON orders_orderevent
    FOR EACH ROW EXECUTE FUNCTION orders_event_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS orders_event_no_update_delete ON orders_orderevent;
DROP FUNCTION IF EXISTS orders_event_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("orders", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
