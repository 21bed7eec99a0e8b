"""Match keys for duplicate detection. Pure: no database.

Three independent keys, any one of which makes a candidate:
* tax id — upper case, separators removed (``DE 123.456-789`` → ``DE123456789``);
* domain — host only, lower case, without scheme, ``www.``, port, path or final dot;
* name + country — case- and accent-folded, punctuation dropped, legal-form suffixes
  (Inc, GmbH, KK, …) removed, then ``"{country}|{name}"``; without a country there
  is no name key (too many false matches across countries).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

LEGAL_FORMS = frozenset(
    "inc incorporated corp corporation co company llc llp ltd limited plc gmbh mbh ag kg kgaa ug "
    "sa sas sarl srl spa bv nv oy ab as aps kk gk pty pte sl".split()
)
_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def normalize_name(name: str | None) -> str:
    if not name:
        return ""
    # Dots go without a trace so "K.K." reads as "kk"; other punctuation splits words.
    words = _PUNCTUATION.sub(" ", _fold(name).replace(".", "").replace("&", " and ")).split()
    # "Acme Co. KK" and "Acme" are the same company; a name that is only a legal
    # form ("Company") keeps its words rather than becoming empty.
    kept = [word for word in words if word not in LEGAL_FORMS]
    return " ".join(kept or words)


def normalize_domain(domain: str | None) -> str:
    if not domain:
        return ""
    host = domain.strip().lower()
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", host)
    host = re.split(r"[/?#]", host, maxsplit=1)[0]
    host = host.rsplit("@", 1)[-1].split(":", 1)[0].rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    return host


def normalize_tax_id(value: str | None) -> str:
    if not value:
        return ""
    return re.sub(r"[\s.\-/]", "", value).upper()


def name_key(name: str | None, country: str | None) -> str:
    normalized = normalize_name(name)
    if not normalized or not country:
        return ""
    return f"{country.upper()}|{normalized}"


def match_keys(*, display_name: str, country: str, domain: str, tax_ids: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The three keys stored on a canonical customer (``name_key``, ``domain_key``, ``tax_key``)."""
    first_tax = next((normalize_tax_id(item.get("value")) for item in tax_ids if item.get("value")), "")
    return {
        "name_key": name_key(display_name, country),
        "domain_key": normalize_domain(domain),
        "tax_key": first_tax,
    }
