import io

import pytest

HEADER = "id,subscription,metric,quantity,timestamp"


@pytest.fixture(autouse=True)
def _usage_storage(settings, tmp_path):
    settings.HUB_USAGE_STORAGE_DIR = str(tmp_path / "usage")


@pytest.fixture
def known(db, legal_entities):
    from integration_hub.usage.services import subscription_upsert

    def make(subscription, *, entity="US", customer="cus_1"):
        return subscription_upsert(subscription=subscription, legal_entity=legal_entities[entity],
                                   billing_customer=customer)
    return make


@pytest.fixture
def load(db, sent_tasks):
    """Receive a file (bytes or text) as a batch and load it at once, as the worker would."""
    from integration_hub.usage.services import batch_load, batch_receive

    def run(content, *, filename="usage.csv"):
        data = content.encode() if isinstance(content, str) else content
        batch = batch_receive(stream=io.BytesIO(data), filename=filename, source="shell", load=False)
        return batch_load(batch.pk)
    return run


def csv_file(*rows: str, header: str = HEADER, newline: str = "\n") -> str:
    return newline.join([header, *rows]) + newline
