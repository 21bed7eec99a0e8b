"""Who may do what: one group per role, created by a data migration.

A role's team groups give the exceptions and transactions its members see: a member
of "Finance operations" sees finance's exceptions, and the business transactions that
are finance's (invoices, payments) or that carry one of finance's exceptions. A
superuser, and a role with ``operations.view_all_teams``, sees every team's. Acting
needs the action's own permission (``operations.replay_exception``, …). API tokens
belong to users, so a token can do exactly what its user can.
"""

from __future__ import annotations

from dataclasses import dataclass

from integration_hub.runtime.models import ExceptionRecord

Team = ExceptionRecord.Team

# Looking at the hub's records (admin change lists and detail pages).
VIEW_RUNTIME = (
    "runtime.view_businesstransaction", "runtime.view_inboundevent", "runtime.view_delivery",
    "runtime.view_deliveryattempt", "runtime.view_exceptionrecord", "runtime.view_auditentry",
    "operations.view_console", "operations.view_exceptionnote", "operations.view_exceptionsla",
)
VIEW_CANONICAL = ("canonical.view_customer", "canonical.view_invoice", "canonical.view_payment",
                  "canonical.view_legalentity", "canonical.view_crossreference",
                  "canonical.view_productversion", "canonical.view_priceversion",
                  "canonical.view_order", "canonical.view_orderline", "canonical.view_subscription",
                  "canonical.view_subscriptionitem", "canonical.view_amendment", "canonical.view_amendmentstep",
                  "usage.view_usagebatch", "usage.view_usageperiod", "usage.view_checkpoint")
# Posting policies: finance edits drafts (rules, tax mappings, regions) and reads what
# they decided; approving is a separate role (the four-eyes principle).
VIEW_POLICIES = ("canonical.view_postingpolicyversion", "canonical.view_postingrule", "canonical.view_taxmapping",
                 "canonical.view_region", "canonical.view_postingdecision", "canonical.view_exchangerate",
                 "canonical.view_reconciliationrun")
EDIT_POLICIES = tuple(f"canonical.{action}_{model}" for model in ("postingpolicyversion", "postingrule", "taxmapping",
                                                                 "region") for action in ("add", "change", "delete"))
VIEW_CONNECTIONS = ("connectors.view_connection", "runtime.view_admissionpolicy", "runtime.view_maintenancewindow")
CASEWORK = ("operations.replay_exception", "operations.bulk_replay_exception",
            "operations.edit_and_replay_exception", "operations.work_exception",
            "operations.add_exceptionnote")


@dataclass(frozen=True)
class Role:
    group: str
    team: str | None
    permissions: tuple[str, ...]


ROLES = (
    Role("IT operations", Team.IT_OPERATIONS, VIEW_RUNTIME + VIEW_CANONICAL + VIEW_CONNECTIONS + CASEWORK + (
        "connectors.change_connection", "runtime.change_admissionpolicy", "runtime.add_maintenancewindow",
        "runtime.change_maintenancewindow", "operations.trigger_sync", "django_celery_beat.view_periodictask",
        "canonical.view_exchangerate", "canonical.load_exchangerate",
    )),
    Role("Finance operations", Team.FINANCE, VIEW_RUNTIME + VIEW_CANONICAL + CASEWORK + VIEW_POLICIES
         + EDIT_POLICIES + ("canonical.change_legalentity", "canonical.load_exchangerate")),
    Role("Sales operations", Team.SALES_OPERATIONS, VIEW_RUNTIME + VIEW_CANONICAL + CASEWORK + (
        "canonical.view_fieldconflict", "canonical.view_duplicatecase", "canonical.change_duplicatecase",
        "operations.decide_conflict", "operations.merge_duplicate", "operations.trigger_sync",
        "canonical.view_systemofrecord",
    )),
    Role("Product operations", Team.PRODUCT_OPERATIONS, VIEW_RUNTIME + VIEW_CANONICAL + CASEWORK),
    Role("Catalog approver", Team.PRODUCT_OPERATIONS, VIEW_RUNTIME + VIEW_CANONICAL + (
        "canonical.approve_catalog", "canonical.view_productversion", "canonical.view_priceversion",
    )),
    Role("Policy approver", Team.FINANCE, VIEW_RUNTIME + VIEW_CANONICAL + VIEW_POLICIES + (
        "canonical.approve_postingpolicyversion",
    )),
    Role("Read-only", None, VIEW_RUNTIME + VIEW_CANONICAL + VIEW_CONNECTIONS + (
        "operations.view_all_teams", "canonical.view_fieldconflict", "canonical.view_duplicatecase",
        "canonical.view_systemofrecord", *VIEW_POLICIES,
    )),
)
TEAM_OF_GROUP = {role.group: role.team for role in ROLES if role.team}
# Approver roles see their team's records but are not the team's own group.
APPROVER_GROUPS = frozenset({"Catalog approver", "Policy approver"})
GROUP_OF_TEAM = {role.team: role.group for role in ROLES if role.team and role.group not in APPROVER_GROUPS}


def roles_sync(apps, schema_editor=None) -> None:
    """Create (or bring up to date) each role's group with exactly its permissions.
    Run by data migrations, so it uses the historical models it is given."""
    from django.contrib.auth.management import create_permissions

    # Permissions are created after all migrations by default; the groups need them now.
    # (Historical app configs carry no models module; set one for the call and put
    # back what was there, so the live registry, when given, is left as it was.)
    for app_config in apps.get_app_configs():
        previous = getattr(app_config, "models_module", None)
        app_config.models_module = previous or True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = previous
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role.group)
        wanted = []
        for name in role.permissions:
            app_label, codename = name.split(".")
            wanted.extend(Permission.objects.filter(content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)


# The SLA per exception category seeded by the migration (then edited in the admin):
# category → (hours, severity).
DEFAULT_SLAS = {
    "configuration": (2, "high"),
    "retries_exhausted": (4, "high"),
    "processing": (4, "high"),
    "policy": (8, "normal"),
    "mapping": (24, "normal"),
    "rejected": (24, "normal"),
    "conflict": (24, "normal"),
    "late_data": (24, "normal"),
    "reconciliation": (8, "high"),
    "alert": (24, "normal"),
    "drift": (24, "normal"),
}


def console_seed(apps, schema_editor=None) -> None:
    """The role groups and the default SLAs (kept where they exist). Idempotent."""
    roles_sync(apps, schema_editor)
    ExceptionSla = apps.get_model("operations", "ExceptionSla")
    for category, (hours, severity) in DEFAULT_SLAS.items():
        ExceptionSla.objects.get_or_create(category=category, defaults={"hours": hours, "severity": severity})
