"""RiskEvent is append-only: on PostgreSQL a trigger refuses UPDATE and DELETE."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION risk_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'risk_riskevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER risk_event_no_update_delete
    BEFORE UPDATE OR DELETE ON risk_riskevent
    FOR EACH ROW EXECUTE FUNCTION risk_event_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS risk_event_no_update_delete ON risk_riskevent;
DROP FUNCTION IF EXISTS risk_event_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("risk", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
