"""Logs never carry credentials: a redaction step masks them, whatever logs them."""

import json
import logging

from integration_hub.logging import MAX_VALUE_CHARS, formatter, redact


def _render(**event):
    return redact(None, "info", {"event": "x", **event})


def test_credential_named_keys_and_declared_secret_fields_are_masked():
    out = _render(password="hunter2", api_key="sk_live_abcdefgh", headers={"Authorization": "Bearer abc"},
                  webhook_secrets=["whsec_1"], login="hub")
    assert out["password"] == out["api_key"] == out["webhook_secrets"] == "[redacted]"
    assert out["headers"] == {"Authorization": "[redacted]"}
    assert out["login"] == "hub"


def test_credentials_and_emails_inside_text_are_masked():
    out = _render(event="call failed: Authorization: Bearer 00Dxx0000001gPL!AQ4AQFZ key sk_test_4eC39HqLyjWDarjtT1zdp7dc "
                        "for ada.lovelace@example.com, password=s3cr3t")
    text = out["event"]
    assert "00Dxx" not in text and "4eC39" not in text and "s3cr3t" not in text
    assert "ada.lovelace" not in text and "a***@example.com" in text


def test_values_are_bounded():
    out = _render(body="x" * 50_000)
    assert len(out["body"]) < MAX_VALUE_CHARS + 100 and "more characters" in out["body"]


def test_stdlib_records_are_redacted_too():
    record = logging.LogRecord("django.request", logging.INFO, __file__, 1, "token=%s", ("abcdef123456789",), None)
    line = formatter(json=True).format(record)
    assert "abcdef123456789" not in line and json.loads(line)["event"] == "token=[redacted]"
