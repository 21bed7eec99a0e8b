"""The demo's usage section: the product platform's usage file (with a duplicate, a
conflict, bad rows and usage of a subscription the hub does not know yet) uploaded
through the API and loaded by the usage worker; the subscription arrives and its usage
matches; the period is closed, aggregated and pushed to the Stripe API sandbox as meter
events; the reconciliation checkpoint compares every stage, in plain words. Then one
meter event goes missing in Stripe, the checkpoint names it and its repair re-pushes it."""

from __future__ import annotations

import datetime as dt

import httpx
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from canonical.models import LegalEntity
from integration_hub.operations.polling import wait_for
from integration_hub.usage import services
from integration_hub.usage.models import UsageAggregate, UsageBatch, UsageMeterEvent
from integration_hub.usage.rows import quantity_format

STAGE_WORDS = {"loaded": "loaded in the hub", "aggregated": "aggregated", "pushed": "pushed to billing",
               "billed": "billed by Stripe"}


def _usage_file(stamp: dt.datetime) -> str:
    at, naive = stamp.isoformat(), stamp.replace(tzinfo=None).isoformat()
    return "\n".join([
        "id,subscription,metric,quantity,timestamp,region",
        f"evt-001,sub_acme,api_calls,1200,{at},eu-west",
        f"evt-002,sub_acme,api_calls,800.5,{at},eu-west",
        f"evt-003,sub_acme,storage_gb,42,{at},eu-west",
        f"evt-004,sub_globex,api_calls,300,{at},us-east",
        f"evt-005,sub_globex,storage_gb,7.25,{at},us-east",
        f"evt-002,sub_acme,api_calls,800.5,{at},eu-west",  # sent twice: a duplicate
        f"evt-004,sub_globex,api_calls,3000,{at},us-east",  # the same id, another quantity: a conflict
        f"evt-006,sub_acme,api_calls,ten,{at},eu-west",  # bad: not a number
        f"evt-007,sub_globex,api_calls,-5,{at},us-east",  # bad: negative
        f"evt-008,sub_globex,storage_gb,1,{naive},us-east",  # bad: a time without its offset
        f"evt-009,sub_initech,api_calls,150,{at},ap-south",  # not known yet: held as unmatched
        f"evt-010,sub_initech,api_calls,50,{at},ap-south",
    ]) + "\n"


def usage_demo(cmd, web_url: str, timeout: float) -> None:
    stripe = cmd.stripe_api
    user, _ = get_user_model().objects.get_or_create(username="usage-platform",
                                                     defaults={"is_staff": True, "is_superuser": True})
    api = httpx.Client(base_url=web_url, timeout=30,
                       headers={"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"})
    customers = {}
    for subscription, name in [("sub_acme", "Acme Analytics"), ("sub_globex", "Globex Logistics"),
                               ("sub_initech", "Initech Labs")]:
        customer = stripe.objects.customer(name, f"billing@{subscription[4:]}.example")
        stripe.customers[customer["id"]] = customer
        customers[subscription] = customer["id"]
    for metric in ("api_calls", "storage_gb"):
        if stripe.meters._active_meter(metric) is None:
            stripe.meters.route(type("R", (), {"path": "/v1/billing/meters", "method": "POST", "query": {}})(),
                                {"display_name": metric, "event_name": metric,
                                 "default_aggregation": {"formula": "sum"}})
    us, eu = LegalEntity.objects.get(code="US"), LegalEntity.objects.get(code="EU")
    services.subscription_upsert(subscription="sub_acme", legal_entity=eu, billing_customer=customers["sub_acme"])
    services.subscription_upsert(subscription="sub_globex", legal_entity=us,
                                 billing_customer=customers["sub_globex"])

    try:
        cmd.step("Usage: the product platform uploads a usage file (POST /api/usage/batches/)")
        stamp = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
        period = stamp.date().replace(day=1)
        content = _usage_file(stamp)
        cmd.say(f"  usage-{period:%Y-%m}.csv, {len(content.splitlines()) - 1} rows; the hub knows sub_acme (EU) "
                "and sub_globex (US), not sub_initech yet")
        answer = api.post("/api/usage/batches/", params={"filename": f"usage-{period:%Y-%m}.csv"},
                          content=content.encode(), headers={"Content-Type": "text/csv"})
        answer.raise_for_status()
        batch_id = answer.json()["id"]
        batch = wait_for(lambda: UsageBatch.objects.filter(pk=batch_id, status__in=["loaded", "failed"]).first(),
                      timeout, "the usage worker to load the batch")
        cmd.say(f"  batch #{batch.pk} {batch.status}: {batch.read} rows read →")
        cmd.say(f"    {batch.loaded} loaded (of them {batch.unmatched} unmatched: held until their subscription "
                "is known, never dropped)")
        cmd.say(f"    {batch.duplicates} duplicate (same id, same content: counted and ignored)")
        conflict = batch.conflict_rows.first()
        cmd.say(f"    {batch.conflicts} conflict (id {conflict.event_id} again with another quantity at line "
                f"{conflict.line}: the first one stays, an exception is opened)" if conflict else
                f"    {batch.conflicts} conflicts")
        cmd.say(f"    {batch.rejected} rejected, each with its line and reason (GET /api/usage/batches/{batch.pk}"
                "/rejects.csv):")
        for reject in batch.rejects.order_by("line"):
            cmd.say(f"      line {reject.line}: {reject.reason}")
        cmd.say(f"  every row accounted for: {batch.loaded} + {batch.duplicates} + {batch.conflicts} + "
                f"{batch.rejected} = {batch.loaded + batch.duplicates + batch.conflicts + batch.rejected} "
                f"of {batch.read}")

        cmd.step("Usage: sub_initech's subscription arrives; its held usage matches by itself")
        services.subscription_upsert(subscription="sub_initech", legal_entity=us,
                                     billing_customer=customers["sub_initech"])
        wait_for(lambda: UsageBatch.objects.get(pk=batch_id).unmatched == 0, timeout, "the held usage to match")
        cmd.say(f"  batch #{batch_id}: {UsageBatch.objects.get(pk=batch_id).unmatched} unmatched now")

        cmd.step(f"Usage: {period:%Y-%m} is closed, aggregated and pushed to Stripe as meter events")
        answer = api.post(f"/api/usage/periods/{period:%Y-%m}/close/")
        answer.raise_for_status()
        cmd.say(f"  period {answer.json()['period']} {answer.json()['status']}: {answer.json()['pushes']} push "
                "(up to 100 meter events each) through the outbox")
        cmd.follow(timeout, "Following the push to Stripe (the worker sends each push as one meter event stream "
                            "request)")
        cmd.say(f"  {'subscription':<12} {'metric':<11} {'records':>7} {'quantity':>9}   Stripe meter event")
        for aggregate in UsageAggregate.objects.filter(period=period).order_by("subscription", "metric"):
            event = aggregate.meter_events.order_by("pk").first()
            held = stripe.meters.events.get(event.identifier) if event else None
            cmd.say(f"  {aggregate.subscription:<12} {aggregate.metric:<11} {aggregate.records:>7} "
                    f"{quantity_format(aggregate.quantity):>9}   "
                    + (f"{event.identifier} = {held['payload']['value']}" if held else "NOT IN STRIPE"))

        cmd.step("Usage: the reconciliation checkpoint (POST /api/reconciliations/)")
        checkpoint = _checkpoint(cmd, api, period)

        lost = UsageMeterEvent.objects.filter(aggregate__subscription="sub_acme", aggregate__metric="api_calls",
                                              push__kind="period").first()
        cmd.step("Usage: one meter event goes missing in Stripe; the checkpoint finds it and repairs it")
        stripe.meters.meter_event_remove(lost.identifier)
        cmd.say(f"  (the demo removes {lost.identifier} from the Stripe sandbox)")
        checkpoint = _checkpoint(cmd, api, period)
        if checkpoint["status"] == "mismatch":
            answer = api.post(f"/api/reconciliations/{checkpoint['id']}/repair/")
            answer.raise_for_status()
            cmd.say(f"  repair (POST /api/reconciliations/{checkpoint['id']}/repair/): {answer.json()['events']} "
                    "meter event re-pushed for what billing lacks, under a new identifier")
            cmd.follow(timeout, "Following the repair push, then the checkpoint again")
            _checkpoint(cmd, api, period)
    finally:
        api.close()


def _checkpoint(cmd, api: httpx.Client, period: dt.date) -> dict:
    answer = api.post("/api/reconciliations/", json={"period": f"{period:%Y-%m}"})
    answer.raise_for_status()  # 202: queued for the usage worker, which reads billing per key
    location = answer.headers["Location"]
    report = wait_for(lambda: (found := api.get(location).json())["status"] != "running" and found, 60,
                   f"the usage worker to run checkpoint {answer.json()['id']}")
    for line in report.get("lines", []):
        stages = [key.removesuffix("_quantity") for key in line if key.endswith("_quantity")]
        figures = ", ".join(f"{STAGE_WORDS.get(stage, stage.replace('_', ' '))} {line[f'{stage}_quantity']}"
                            for stage in stages)
        # The key control: loaded = aggregated = billed ("pushed" is what the hub sent:
        # a lost event and its repair make it more).
        quantities = {line[f"{stage}_quantity"] for stage in ("loaded", "aggregated", "billed") if stage in stages}
        cmd.say(f"  {line.get('legal_entity')} {line.get('currency')} {line.get('metric'):<10} "
                f"{line.get('keys', '')} subscription(s): {figures}  "
                + ("→ loaded = aggregated = billed" if len(quantities) == 1 else "→ DIFFERENT"))
    if report["status"] == "balanced":
        resent = any(line.get("pushed_quantity") != line.get("billed_quantity") for line in report.get("lines", []))
        cmd.say(f"  checkpoint #{report['id']}: balanced — every record loaded is in an aggregate, and Stripe "
                "bills exactly what the hub aggregated"
                + (" (\"pushed\" is what the hub sent: the lost event and its repair both count there)"
                   if resent else ""))
    else:
        cmd.say(f"  checkpoint #{report['id']}: {report['status']} — a finance exception names each key that differs:")
        for mismatch in report.get("mismatches", []):
            stages = ", ".join(f"{STAGE_WORDS.get(k, k)} {v}" for k, v in mismatch.items()
                               if k not in ("subscription", "metric", "legal_entity"))
            cmd.say(f"    {mismatch.get('subscription')} × {mismatch.get('metric')}: {stages}")
    return report
