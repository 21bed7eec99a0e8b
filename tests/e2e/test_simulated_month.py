"""The simulated month, CI size, against its own real Tryton: three entities, eight
or more currencies (JPY, KWD …), subscriptions, plan changes, credit notes, voids,
late and partial payments; the three-way reconciliation shows no difference."""

import re

import pytest

from canonical.models import Customer, ReconciliationRun
from integration_hub.runtime.models import ExceptionRecord

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def month_erp():
    # Its own ERP: the month is backdated, and Tryton numbers invoices in date order.
    from connectors.tryton.server import TrytonServer
    from tests.e2e.conftest import TRYTON_CACHE_DIR

    server = TrytonServer.from_cache(TRYTON_CACHE_DIR).start()
    yield server
    server.stop()


def test_a_simulated_month_reconciles_to_the_minor_unit(month_erp, capsys):
    from integration_hub.workflows.management.commands.simulate_month import simulate

    run = simulate(month_erp, subscriptions=15, days=30, seed=7)
    out = capsys.readouterr().out
    assert not ExceptionRecord.objects.filter(status="open").exists(), out
    assert run.differences == 0, out
    currencies = {row["currency"] for row in run.rows}
    assert {"JPY", "KWD", "EUR", "USD"} <= currencies and len(currencies) >= 8
    assert {row["entity"] for row in run.rows} == {"US", "EU", "JP"}
    assert ReconciliationRun.objects.get() == run and "difference: 0 minor units" in out
    # What the issue asks the month to contain, as the command reports it.
    counts = {what: int(n) for n, what in re.findall(r"(\d+) (new subscriptions|upgrades|downgrades|credit notes|"
                                                       r"voids|late payments|partial payments)", out)}
    assert set(counts) == {"new subscriptions", "upgrades", "downgrades", "credit notes", "voids", "late payments",
                           "partial payments"} and all(counts.values()), out
    countries = int(re.search(r"customers in (\d+) countries", out).group(1))
    assert countries >= 8 and Customer.objects.values("country").distinct().count() >= 8
    print(out)
