"""Configure a hub database for a scenario that runs on its own PostgreSQL:
``python -m tests.faults.configure '<json>'`` with DATABASE_URL pointing at it."""

import json
import os
import sys

import django


def main(spec: dict) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integration_hub.settings")
    django.setup()
    from canonical.models import LegalEntity
    from canonical.policy_services import policy_bootstrap
    from connectors.services import connection_upsert
    from integration_hub.runtime.models import AdmissionPolicy

    for code, name, currency, country in spec["legal_entities"]:
        LegalEntity.objects.create(code=code, name=name, currency=currency, country=country)
    policy_bootstrap(taxes={"10": "VAT-10", "0": ""})  # invoices post by an approved posting policy
    connection_upsert(name="stripe", vendor="stripe", role="billing", config={},
                      credentials={"webhook_secrets": [spec["webhook_secret"]]})
    erp = connection_upsert(name="tryton", vendor="tryton", role="erp", config=spec["erp_config"],
                            credentials=spec["erp_credentials"])
    AdmissionPolicy.objects.create(connection=erp, failure_threshold=3, open_seconds=2)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
