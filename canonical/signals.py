"""Notices between workflows inside the hub (Django signals): one workflow reacts to
another's outcome without importing it. Each is sent after its transaction commits."""

from django.dispatch import Signal

# A catalog product now exists in a target system: its binding there is stored.
# Keyword arguments: ``product_id`` (canonical Product) and ``system`` (the connection name).
product_released = Signal()
