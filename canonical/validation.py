"""Master-data validation of a customer before it is sent anywhere. Pure.

Problems are returned as sentences (all of them, not the first), so the person
fixing the record in the CRM sees everything at once.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from canonical.contracts import CustomerV1

# ISO 3166-1 alpha-2, officially assigned codes.
ISO_COUNTRIES = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG
    EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR
    HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR
    LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG
    NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE
    SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA
    UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW""".split()
)

# Formats of the tax id types the hub checks; others are accepted as given (the
# ERP, which owns tax registration, validates them fully).
TAX_ID_FORMATS = {
    "eu_vat": re.compile(r"^(AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|XI)"
                         r"[0-9A-Z+*]{8,12}$"),
    "gb_vat": re.compile(r"^GB([0-9]{9}|[0-9]{12}|GD[0-9]{3}|HA[0-9]{3})$"),
    "us_ein": re.compile(r"^[0-9]{2}-?[0-9]{7}$"),
    "jp_cn": re.compile(r"^[0-9]{13}$"),
}


def customer_problems(customer: CustomerV1, *, known_currencies: Collection[str]) -> list[str]:
    """Why ``customer`` cannot be onboarded; empty when it can.

    Required: a name and a billing country. The country must be an ISO 3166-1
    alpha-2 code; each tax id of a checked type must match its format; a currency,
    when given, must be the functional currency of one of the group's legal entities.
    """
    problems = []
    if not customer.display_name.strip():
        problems.append("the name is empty")
    country = customer.address.country if customer.address else None
    if not country:
        problems.append("the billing country is missing")
    elif country not in ISO_COUNTRIES:
        problems.append(f"the billing country {country!r} is not an ISO 3166-1 alpha-2 code")
    for tax_id in customer.tax_ids:
        pattern = TAX_ID_FORMATS.get(tax_id.type)
        if pattern is not None and not pattern.match(tax_id.value.replace(" ", "").upper()):
            problems.append(f"tax id {tax_id.value!r} is not a valid {tax_id.type}")
    if customer.currency and customer.currency not in known_currencies:
        known = ", ".join(sorted(known_currencies)) or "none"
        problems.append(f"currency {customer.currency} is not booked by any legal entity (known: {known})")
    return problems
