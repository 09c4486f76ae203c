"""No planner statistics for the audit events' `data` (PostgreSQL): no query filters or sorts
on it, only reads it back, yet every ANALYZE of orders_orderevent compared and sorted the
30,000 sampled jsonb documents to build them. That was half of the ANALYZE: 175-186 ms of CPU
against 83-91 ms without, on 61,000 events here (2026-12-05). Autovacuum analyzes a table
after a tenth of it changed, every pass while the table is young, and each ANALYZE ran beside
the order path at full speed: its CPU showed in the submit latencies of the moment
(docs/performance.md, "The concurrency figure's noise"). SQLite keeps no such statistics."""

from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            'ALTER TABLE "orders_orderevent" ALTER COLUMN "data" SET STATISTICS 0'
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            'ALTER TABLE "orders_orderevent" ALTER COLUMN "data" SET STATISTICS -1'
        )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0013_event_search_indexes"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
