"""From a BANKING77 intent to the team or queue that handles it.

Routing is a business decision layered on the classifier: the mapping is data, and a
prediction below ``ROUTING_THRESHOLD`` (calibrated probability) goes to ``unrouted``
for a person to triage rather than to a confidently wrong queue.
"""

from __future__ import annotations

UNROUTED = "unrouted"
ROUTING_THRESHOLD = 0.5

TEAM_INTENTS: dict[str, tuple[str, ...]] = {
    "cards": (
        "activate_my_card", "apple_pay_or_google_pay", "card_about_to_expire", "card_acceptance", "card_arrival",
        "card_delivery_estimate", "card_linking", "card_not_working", "card_swallowed", "change_pin",
        "contactless_not_working", "disposable_card_limits", "get_disposable_virtual_card", "get_physical_card",
        "getting_spare_card", "getting_virtual_card", "order_physical_card", "supported_cards_and_currencies",
        "virtual_card_not_working", "visa_or_mastercard",
    ),
    "payments": (
        "Refund_not_showing_up", "card_payment_not_recognised", "declined_card_payment",
        "direct_debit_payment_not_recognised", "pending_card_payment", "request_refund", "reverted_card_payment?",
        "transaction_charged_twice",
    ),
    "transfers": (
        "balance_not_updated_after_bank_transfer", "beneficiary_not_allowed", "cancel_transfer", "declined_transfer",
        "failed_transfer", "pending_transfer", "receiving_money", "transfer_into_account",
        "transfer_not_received_by_recipient", "transfer_timing",
    ),
    "top_up": (
        "automatic_top_up", "balance_not_updated_after_cheque_or_cash_deposit", "pending_top_up",
        "top_up_by_cash_or_cheque", "top_up_failed", "top_up_limits", "top_up_reverted", "topping_up_by_card",
        "verify_top_up",
    ),
    "cash": (
        "atm_support", "cash_withdrawal_not_recognised", "declined_cash_withdrawal", "pending_cash_withdrawal",
        "wrong_amount_of_cash_received",
    ),
    "exchange": (
        "card_payment_wrong_exchange_rate", "exchange_rate", "exchange_via_app", "fiat_currency_support",
        "wrong_exchange_rate_for_cash_withdrawal",
    ),
    "fees": (
        "card_payment_fee_charged", "cash_withdrawal_charge", "exchange_charge", "extra_charge_on_statement",
        "top_up_by_bank_transfer_charge", "top_up_by_card_charge", "transfer_fee_charged",
    ),
    "account": (
        "age_limit", "country_support", "edit_personal_details", "terminate_account", "unable_to_verify_identity",
        "verify_my_identity", "verify_source_of_funds", "why_verify_identity",
    ),
    "security": ("compromised_card", "lost_or_stolen_card", "lost_or_stolen_phone", "passcode_forgotten",
                 "pin_blocked"),
}
INTENT_TEAM: dict[str, str] = {intent: team for team, intents in TEAM_INTENTS.items() for intent in intents}


def route(intent: str | None, score: float | None, threshold: float = ROUTING_THRESHOLD) -> str | None:
    """The team for a predicted intent; ``unrouted`` when unsure or unmapped; None when not classified."""
    if intent is None:
        return None
    if score is None or score < threshold:
        return UNROUTED
    return INTENT_TEAM.get(intent, UNROUTED)
