"""Write ``products/support_answers/data/past_tickets.jsonl``: 500 synthetic past tickets.

Deterministic (a fixed seed), so the file only changes when this script does. Each ticket
is a subject, a body, a category, a priority and how it was resolved; a few carry an
e-mail address or a phone number, which vector memory stores redacted.

    python scripts/make_support_tickets.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "products/support_answers/data/past_tickets.jsonl"

TOPICS: dict[str, list[tuple[str, str, str]]] = {
    "billing": [
        (
            "Charged twice for my order",
            "I see two charges for order {n} on my card statement.",
            "Refunded the duplicate charge; it shows on the statement in 3-5 days.",
        ),
        (
            "Invoice shows the wrong VAT number",
            "The invoice for order {n} has our old VAT number.",
            "Reissued the invoice with the VAT number from the account settings.",
        ),
        (
            "Refund not received",
            "You promised a refund for order {n} two weeks ago, nothing yet.",
            "The refund was stuck in review; released it and sent the bank reference.",
        ),
        (
            "Subscription renewed after I cancelled",
            "I cancelled last month but was billed again.",
            "Cancelled the renewal and refunded the last billing period in full.",
        ),
    ],
    "shipping": [
        (
            "Parcel arrived damaged",
            "The box for order {n} was crushed and the item is broken.",
            "Sent a replacement by express shipping; no need to return the damaged item.",
        ),
        (
            "Order not delivered yet",
            "Order {n} was due last week and tracking has not moved.",
            "The carrier lost the parcel; shipped a new one with a new tracking number.",
        ),
        (
            "Wrong address on my order",
            "I need to change the delivery address of order {n}.",
            "Updated the address with the carrier before dispatch.",
        ),
        (
            "Missing item in the package",
            "Order {n} arrived but one of the three items is missing.",
            "Shipped the missing item separately at no charge.",
        ),
    ],
    "account": [
        (
            "Cannot reset my password",
            "The password reset e-mail never arrives.",
            "The address had a typo; corrected it and sent a new reset link.",
        ),
        (
            "Locked out after too many attempts",
            "My account is locked after failed logins.",
            "Unlocked the account after verifying identity; suggested a password manager.",
        ),
        (
            "Change the e-mail on my account",
            "I want to use a new e-mail address for my login.",
            "Changed the login e-mail after confirming both addresses.",
        ),
        (
            "Delete my account",
            "Please delete my account and all my data.",
            "Deleted the account and confirmed erasure under the data protection policy.",
        ),
    ],
    "technical": [
        (
            "App crashes on start",
            "Since the last update the app closes right after launch.",
            "Known bug in version 4.2; fixed in 4.2.1, asked the customer to update.",
        ),
        (
            "Sync stopped working",
            "My devices no longer sync, the last sync was days ago.",
            "Signed out and in again to refresh the sync token; sync resumed.",
        ),
        (
            "Export to CSV is empty",
            "Exporting my report to CSV gives an empty file.",
            "The date filter excluded every row; widened it and the export worked.",
        ),
        (
            "Two-factor codes rejected",
            "The codes from my authenticator app are always wrong.",
            "The phone clock was off; enabling automatic time fixed the codes.",
        ),
    ],
    "returns": [
        (
            "How do I return an item",
            "I want to return the shoes from order {n}, wrong size.",
            "Sent a prepaid return label; refund follows when the parcel arrives.",
        ),
        (
            "Return label does not work",
            "The return label for order {n} is rejected by the shop.",
            "Issued a new label from the other carrier.",
        ),
        (
            "Exchange for another size",
            "Can I exchange the jacket from order {n} for a size M?",
            "Reserved size M and sent an exchange label.",
        ),
        (
            "Return window expired",
            "I missed the 30-day return window by two days.",
            "Accepted the return as a goodwill gesture this once.",
        ),
    ],
}
OPENERS = ["Hello,", "Hi team,", "Good morning,", "Dear support,", ""]
CLOSERS = ["Thanks.", "Please help.", "Regards.", "This is urgent.", ""]


def tickets(count: int = 500, seed: int = 21) -> list[dict[str, object]]:
    rng = random.Random(seed)  # noqa: S311  # synthetic data, not secrets
    out: list[dict[str, object]] = []
    categories = sorted(TOPICS)
    for i in range(count):
        category = categories[i % len(categories)]
        subject, body, resolution = rng.choice(TOPICS[category])
        order = f"A{rng.randint(10000, 99999)}"
        text = f"{rng.choice(OPENERS)} {body.format(n=order)} {rng.choice(CLOSERS)}".strip()
        if i % 25 == 0:
            text += f" You can reach me at customer{i}@example.com."
        if i % 40 == 7:
            text += f" Call me on +44 20 7946 {rng.randint(1000, 9999)}."
        out.append(
            {
                "ticket_id": f"T{1000 + i}",
                "subject": subject,
                "body": text,
                "category": category,
                "priority": rng.randint(1, 4),
                "resolution": resolution if i % 10 else "",
            }
        )
    return out


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as handle:
        for ticket in tickets():
            handle.write(json.dumps(ticket, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
