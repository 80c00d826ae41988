"""The database refuses a deployment without a policy version: checked when its transaction
commits, so `deployment_create` writes the deployment and its first version together."""

from django.db import migrations

FORWARDS = """
CREATE FUNCTION rollout_deployment_has_policy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM reviewplatform_deployment WHERE id = NEW.id)
       AND NOT EXISTS (SELECT 1 FROM rollout_policyversion WHERE deployment_id = NEW.id) THEN
        RAISE EXCEPTION 'deployment % has no policy version', NEW.slug
            USING ERRCODE = 'check_violation',
                  HINT = 'create deployments with rollout.services.deployment_create';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER reviewplatform_deployment_has_policy
    AFTER INSERT ON reviewplatform_deployment
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION rollout_deployment_has_policy();
"""

BACKWARDS = """
DROP TRIGGER IF EXISTS reviewplatform_deployment_has_policy ON reviewplatform_deployment;
DROP FUNCTION IF EXISTS rollout_deployment_has_policy();
"""


class Migration(migrations.Migration):

    dependencies = [
        ("rollout", "0005_report_pending_triggers"),
        ("reviewplatform", "0004_routing_failed_reason"),
    ]

    operations = [migrations.RunSQL(FORWARDS, BACKWARDS)]
