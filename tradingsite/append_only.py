"""Append-only tables on PostgreSQL: a trigger that refuses UPDATE and DELETE.

Used by the migrations of audit tables (orders_orderevent, risk_riskevent). SQLite, the
zero-set-up default, has no such trigger; the application never updates or deletes these rows
there either, and PostgreSQL is the production book of record. There is no TRUNCATE trigger:
the test suite empties tables with TRUNCATE (docs/order-path.md).
"""

from django.db import migrations


def append_only(table: str, *, function: str, trigger: str) -> migrations.RunPython:
    """A migration operation that makes `table` append-only on PostgreSQL, with a trigger
    `trigger` calling the function `function`."""
    create = f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{table} is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER {trigger}
    BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {function}();
"""
    drop = f"""
DROP TRIGGER IF EXISTS {trigger} ON {table};
DROP FUNCTION IF EXISTS {function}();
"""

    def forwards(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(create, params=None)

    def backwards(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(drop, params=None)

    return migrations.RunPython(forwards, backwards)
