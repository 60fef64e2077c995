"""The default zero-shot topic taxonomy for customer feedback: label → one-line description.

Override it per run with a ``zero_shot:`` block in a run config; nothing is trained.
"""

from __future__ import annotations

DEFAULT_TOPICS: dict[str, str] = {
    "delivery": "shipping, delivery, a late, lost or damaged parcel or order",
    "billing": "invoices, charges, payments, refunds, being charged twice or charged wrongly",
    "product_quality": "the product is broken, faulty, poorly made, does not work as described",
    "customer_service": "support staff, agents, waiting on hold, unanswered emails, rude or helpful service",
    "account_access": "logging in, passwords, locked or hacked accounts, verification codes",
    "pricing": "prices, costs, discounts, deals, too expensive or good value for money",
    "praise": "compliments, thanks, love, great experience, highly recommended",
    "other": "anything else: general chat, news, questions unrelated to a product or service",
}
