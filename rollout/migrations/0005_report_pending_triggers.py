"""PostgreSQL triggers that mark a case for the report's next fold whenever its decision,
predictions or reviews are written, or one of its review tasks finishes (or stops being
finished). Statement-level triggers (one insert per statement, however many rows); a claim or
a lease renewal, which only updates an unfinished task, marks nothing.

What the facts are counted with is watched too (row-level triggers whose WHEN clause makes
every other update free): a case moved to another region, deployment or capture time; a
region's time zone; a deployment's labels. The last two mark every case they cover."""

from django.db import migrations

FUNCTIONS = """
CREATE FUNCTION rollout_report_pending_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollout_reportpending (case_id) SELECT DISTINCT case_id FROM new_rows;
    RETURN NULL;
END $$;
CREATE FUNCTION rollout_report_pending_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollout_reportpending (case_id) SELECT DISTINCT case_id FROM old_rows;
    RETURN NULL;
END $$;
CREATE FUNCTION rollout_report_pending_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollout_reportpending (case_id)
    SELECT case_id FROM new_rows UNION SELECT case_id FROM old_rows;
    RETURN NULL;
END $$;
CREATE FUNCTION rollout_report_pending_case() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollout_reportpending (case_id) VALUES (NEW.id);
    RETURN NULL;
END $$;
CREATE FUNCTION rollout_report_pending_region() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollout_reportpending (case_id)
    SELECT id FROM reviewplatform_case WHERE region_id = NEW.id;
    RETURN NULL;
END $$;
CREATE FUNCTION rollout_report_pending_deployment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollout_reportpending (case_id)
    SELECT id FROM reviewplatform_case WHERE deployment_id = NEW.id;
    RETURN NULL;
END $$;
CREATE FUNCTION rollout_report_pending_task_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollout_reportpending (case_id)
    SELECT DISTINCT case_id FROM new_rows WHERE status = 'done';
    RETURN NULL;
END $$;
CREATE FUNCTION rollout_report_pending_task_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollout_reportpending (case_id)
    SELECT DISTINCT case_id FROM old_rows WHERE status = 'done';
    RETURN NULL;
END $$;
CREATE FUNCTION rollout_report_pending_task_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollout_reportpending (case_id)
    SELECT n.case_id FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.status = 'done' OR o.status = 'done'
    UNION SELECT o.case_id FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE o.status = 'done' AND o.case_id <> n.case_id;
    RETURN NULL;
END $$;
"""

TABLES = ("reviewplatform_decision", "reviewplatform_review", "inference_prediction")


def _triggers() -> str:
    statements = []
    for table in TABLES:
        statements += [
            f"CREATE TRIGGER {table}_report_insert AFTER INSERT ON {table} REFERENCING NEW TABLE"
            f" AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rollout_report_pending_new();",
            f"CREATE TRIGGER {table}_report_update AFTER UPDATE ON {table} REFERENCING OLD TABLE"
            f" AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
            f" EXECUTE FUNCTION rollout_report_pending_changed();",
            f"CREATE TRIGGER {table}_report_delete AFTER DELETE ON {table} REFERENCING OLD TABLE"
            f" AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION rollout_report_pending_old();",
        ]
    task = "reviewplatform_reviewtask"
    statements += [
        f"CREATE TRIGGER {task}_report_insert AFTER INSERT ON {task} REFERENCING NEW TABLE"
        f" AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rollout_report_pending_task_new();",
        f"CREATE TRIGGER {task}_report_update AFTER UPDATE ON {task} REFERENCING OLD TABLE"
        f" AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
        f" EXECUTE FUNCTION rollout_report_pending_task_changed();",
        f"CREATE TRIGGER {task}_report_delete AFTER DELETE ON {task} REFERENCING OLD TABLE"
        f" AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION rollout_report_pending_task_old();",
    ]
    statements += [
        "CREATE TRIGGER reviewplatform_case_report_update AFTER UPDATE ON reviewplatform_case"
        " FOR EACH ROW WHEN (OLD.region_id IS DISTINCT FROM NEW.region_id"
        " OR OLD.deployment_id IS DISTINCT FROM NEW.deployment_id"
        " OR OLD.captured_at IS DISTINCT FROM NEW.captured_at)"
        " EXECUTE FUNCTION rollout_report_pending_case();",
        "CREATE TRIGGER reviewplatform_region_report_update AFTER UPDATE ON reviewplatform_region"
        " FOR EACH ROW WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone)"
        " EXECUTE FUNCTION rollout_report_pending_region();",
        "CREATE TRIGGER reviewplatform_deployment_report_update AFTER UPDATE"
        " ON reviewplatform_deployment FOR EACH ROW WHEN (OLD.labels IS DISTINCT FROM NEW.labels)"
        " EXECUTE FUNCTION rollout_report_pending_deployment();",
    ]
    return "\n".join(statements)


WATCHED = ("reviewplatform_case", "reviewplatform_region", "reviewplatform_deployment")


def _drop() -> str:
    statements = [f"DROP TRIGGER IF EXISTS {table}_report_{event} ON {table};"
                  for table in (*TABLES, "reviewplatform_reviewtask")
                  for event in ("insert", "update", "delete")]
    statements += [f"DROP TRIGGER IF EXISTS {table}_report_update ON {table};"
                   for table in WATCHED]
    statements += [f"DROP FUNCTION IF EXISTS rollout_report_pending_{name}();"
                   for name in ("new", "old", "changed", "task_new", "task_old", "task_changed",
                                "case", "region", "deployment")]
    return "\n".join(statements)


class Migration(migrations.Migration):

    dependencies = [
        ("rollout", "0004_report_rollup"),
        ("reviewplatform", "0003_queue_order_second_opinions_gold"),
        ("inference", "0004_batching_and_audit"),
    ]

    operations = [migrations.RunSQL([FUNCTIONS + _triggers()], reverse_sql=[_drop()])]
