"""Optional PII redaction, applied to every text field before anything is written.

Each kind is found and then validated, so ordinary numbers are not blanked: payment cards
must pass the Luhn check, IBANs the ISO 13616 mod-97 check with their country's length,
phone numbers Google's ``phonenumbers`` validation. URLs keep their host and path; only
query or fragment values whose names say they are secrets (``token``, ``api_key``, ``sig``)
are replaced. The placeholders name the kind, so a classifier still sees that an address
or a number was there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import phonenumbers

from transforms.clean import WIDE_PUNCTUATION
from transforms.ingest.read import COMPRESSED_SUFFIXES, FORMAT_EXTENSIONS
from transforms.records import Document

PLACEHOLDERS = {
    "url_secret": "[SECRET]",
    "email": "[EMAIL]",
    "card": "[CARD]",
    "iban": "[IBAN]",
    "phone": "[PHONE]",
}
"""The kinds, in the order they are applied (secrets inside URLs first, phones last), and their placeholders."""

PHONE_REGION = "US"
"""Numbers written without a country code are read as North American numbers; ``+CC`` numbers are found anywhere."""
_ZERO_ZERO_REGION = "GB"
"""A region whose international prefix is ``00``, to read ``0044 20 7946 0958`` (the US one is ``011``)."""
_ZERO_ZERO = re.compile(r"(?<!\d)00")
"""Text without it has no ``00`` number, and is spared the second, slow pass of the phone matcher."""

_URL = re.compile(rf"(?:https?://|www\.)(?:[^\s<>\"'(){WIDE_PUNCTUATION}]|\([^\s<>\"'(){WIDE_PUNCTUATION}]*\))*"
                  rf"(?:[^\s<>\"'().,;:!?\]}}’”{WIDE_PUNCTUATION}]|\([^\s<>\"'(){WIDE_PUNCTUATION}]*\))", re.IGNORECASE)
"""A URL with its balanced parentheses only (``.../wiki/Reset_(account)?token=...``), as :mod:`transforms.clean`
reads it: the ``)`` of a parenthesis opened before it, a closing quote, a full-width bracket and the sentence's
punctuation (``see https://x.example/a?token=abc.``) are the text's, and so are the words right after them."""
_URL_PARAM = re.compile(r"(?<=[?&#;])([^=&#;\s]+)=([^&#;\s]+)")
_SECRET_NAMES = frozenset({
    "token", "key", "apikey", "secret", "password", "passwd", "pwd", "pass", "auth", "authorization", "sig",
    "signature", "session", "sessionid", "sid", "code", "otp", "jwt", "credential", "xamzcredential",
    "xamzsignature", "xamzsecuritytoken",
})
_SECRET_SUFFIXES = ("token", "secret", "key", "password", "signature")
_DOMAIN_LABEL = r"[^\W_](?:(?:[^\W_]|-)*[^\W_])?"
_EMAIL = re.compile(rf"(?<![\w.%+-])[^\W_][\w.%+-]{{0,63}}@{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*\.[^\W\d_]{{2,24}}"
                    r"(?![\w-])")
"""Letters of any script (``jörg.müller@example.de``, ``用户@例子.公司``): RFC 6531 addresses are delivered."""
_CARD = re.compile(r"(?<![\w.-])\d(?:(?:[ \u00a0]{1,2}|[.-])?\d){12,18}(?![\w-]|\.\d)")
"""13-19 digits, grouped by one or two spaces (no-break ones too), hyphens or dots (``4111.1111.1111.1111``)."""
_IBAN = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})(\d{2})((?: ?[A-Z0-9]){11,30})", re.IGNORECASE)
"""Upper or lower case (``fr14 2004 ...`` typed into a form): the check digits decide."""
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
"""IBAN length per country (SWIFT IBAN registry): the check digits alone would accept 1 in 97 random strings."""

Found = set[str]


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number carries in its last digit."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


_CARD_SHAPES = (
    (("4",), (13, 16, 19)),  # Visa
    (tuple(str(prefix) for prefix in (*range(51, 56), *range(2221, 2721))), (16,)),  # Mastercard
    (("34", "37"), (15,)),  # American Express
    (("6011", "65", *map(str, range(644, 650))), (16, 17, 18, 19)),  # Discover
    (tuple(map(str, range(3528, 3590))), (16, 17, 18, 19)),  # JCB
    (("36", "38", "300", "301", "302", "303", "304", "305"), (14, 15, 16, 17, 18, 19)),  # Diners Club
    (("62",), (16, 17, 18, 19)),  # UnionPay
)
"""Issuer prefixes and lengths: with the Luhn check alone, 1 in 10 long reference numbers would pass."""


def card_number_shape(digits: str) -> bool:
    """Whether the digits start like a card network's numbers and have one of its lengths."""
    return any(digits.startswith(prefixes) and len(digits) in lengths for prefixes, lengths in _CARD_SHAPES)


def iban_valid(compact: str) -> bool:
    """ISO 13616: the right length for the country and ``int(rearranged) % 97 == 1``."""
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _is_secret_name(name: str) -> bool:
    normalised = re.sub(r"[^a-z0-9]", "", name.lower())
    return normalised in _SECRET_NAMES or normalised.endswith(_SECRET_SUFFIXES)


def _redact_url_secrets(text: str, found: Found) -> str:
    def redact_url(url: re.Match[str]) -> str:
        def redact_param(param: re.Match[str]) -> str:
            name, value = param.group(1), param.group(2)
            if not _is_secret_name(name) or value == PLACEHOLDERS["url_secret"]:
                return param.group(0)
            found.add(value)
            return f"{name}={PLACEHOLDERS['url_secret']}"

        return _URL_PARAM.sub(redact_param, url.group(0))

    return _URL.sub(redact_url, text)


def _redact_emails(text: str, found: Found) -> str:
    def replace(match: re.Match[str]) -> str:
        found.add(match.group(0).lower())
        return PLACEHOLDERS["email"]

    return _EMAIL.sub(replace, text)


def _redact_cards(text: str, found: Found) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if not (card_number_shape(digits) and luhn_valid(digits)):
            return match.group(0)
        found.add(digits)
        return PLACEHOLDERS["card"]

    return _CARD.sub(replace, text)


def _redact_ibans(text: str, found: Found) -> str:
    """Every valid IBAN, spaced or not. A candidate runs up to 30 characters past its check digits, so it can
    swallow the words and the IBAN after it ("DE89... new IBAN GB82..."): the search goes on where the IBAN ends,
    or one character on from a candidate that is none, never past the whole candidate."""
    pieces, copied, search_from = [], 0, 0
    while match := _IBAN.search(text, search_from):
        country, check, rest = match.groups()
        length = _IBAN_LENGTHS.get(country.upper())
        compact = (country + check + rest.replace(" ", "")).upper()[: length or 0]
        end = match.start() + _span_of_compact(match.group(0), length or 0)
        if not length or len(compact) < length or text[end:end + 1].isalnum() or not iban_valid(compact):
            search_from = match.start() + 1
            continue
        found.add(compact)
        pieces += [text[copied:match.start()], PLACEHOLDERS["iban"]]
        copied = search_from = end
    return "".join(pieces) + text[copied:]


def _span_of_compact(spaced: str, length: int) -> int:
    """How many characters of ``spaced`` hold its first ``length`` non-space characters."""
    seen = 0
    for index, char in enumerate(spaced):
        seen += char != " "
        if seen == length:
            return index + 1
    return len(spaced)


_LABELED_NUMBER = re.compile(r"(?:\b(?:order|invoice|ticket|case|ref|reference|tracking|sku|item|version|build|"
                             r"serial|account|customer|confirmation|booking|reservation|transaction|receipt|claim|"
                             r"policy|shipment|parcel)\b(?:\W{0,3}(?:number|num|no|nr|id|code)\b)?(?:\W{1,3}is\b)?|"
                             r"#|\bv)\W{0,3}$", re.IGNORECASE)
"""The words that make the number right after them an identifier, not a phone (``order 2026112012``, ``Order
number: 2026112012``, ``Ref. no. 415-555-2671``, ``invoice 2026-000123``, ``version 2.0.1.5550100``): ten digits
pass as a North American number. Not "no" or "id" alone: "phone no. 415 555 2671" is a phone."""


def _valid_phones(text: str, region: str) -> list[phonenumbers.PhoneNumberMatch]:
    """Every valid number in ``text``. The matcher gives up after 65,535 rejected candidates by default, which left
    every number after them in clear (``1.1.1.…`` or ``1a1a…`` on 132,000 characters); ``text`` holds fewer
    candidates than characters, and at the text limit the whole text costs about a second."""
    return list(phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID,
                                                max_tries=len(text) + 1))


def _redact_phones(text: str, found: Found) -> str:
    """Numbers read as North American or with ``+CC``, and those dialled with ``00CC``; where two readings
    overlap, the one that starts first (the ``00`` one) is kept. The text is put together once from the pieces
    between the numbers: replaced one at a time, each number copied the whole text (quadratic in their number)."""
    dialled_with_00 = _valid_phones(text, _ZERO_ZERO_REGION) if _ZERO_ZERO.search(text) else []
    candidates = [*_valid_phones(text, PHONE_REGION),
                  *(match for match in dialled_with_00 if match.raw_string.lstrip("(").startswith("00"))]
    readings: list[phonenumbers.PhoneNumberMatch] = []
    for match in sorted(candidates, key=lambda match: (match.start, -match.end)):
        if not readings or match.start >= readings[-1].end:
            readings.append(match)
    pieces, copied = [], 0
    for match in readings:
        if _LABELED_NUMBER.search(text[max(0, match.start - 40):match.start]):
            continue
        found.add(phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164))
        pieces += [text[copied:match.start], PLACEHOLDERS["phone"]]
        copied = match.end
    return "".join(pieces) + text[copied:]


_REDACTORS: dict[str, Callable[[str, Found], str]] = {
    "url_secret": _redact_url_secrets,
    "email": _redact_emails,
    "card": _redact_cards,
    "iban": _redact_ibans,
    "phone": _redact_phones,
}


def redact_text(text: str, found: dict[str, Found] | None = None) -> str:
    """``text`` with every validated PII value replaced by its kind's placeholder.

    The distinct values found are added to ``found`` (kind → values), so several fields of
    one document can be counted without counting an address twice.
    """
    found = found if found is not None else {}
    for kind, redact in _REDACTORS.items():
        text = redact(text, found.setdefault(kind, set()))
    return text


def counts(found: dict[str, Found]) -> dict[str, int]:
    """Kind → number of distinct values, for the kinds that were found."""
    return {kind: len(values) for kind, values in found.items() if values}


def _suffix_pattern(suffixes: Iterable[str]) -> str:
    return "|".join(re.escape(suffix) for suffix in sorted(suffixes, key=len, reverse=True))


_REF_TAIL = re.compile(rf"(?:{_suffix_pattern(FORMAT_EXTENSIONS)})?(?:{_suffix_pattern(COMPRESSED_SUFFIXES)})?"
                       r"(?::\d+|\[\d+\]|#row=\d+|@\d+)?\Z", re.IGNORECASE)
"""What an ``input_ref`` ends with after the file's name: its format and compression suffixes, then the line
(``:12``), array item (``[3]``), Parquet row (``#row=7``) or mbox offset (``@20481``)."""


def redact_ref(ref: str) -> str:
    """``ref`` with the PII its path holds (``exports/jane.doe@example.com.csv:12``) replaced; the suffixes and the
    position after the name stay as they are, so a line number is never read as a phone number and the address
    never swallows ``.csv`` as its top-level domain."""
    tail = _REF_TAIL.search(ref)
    start = tail.start() if tail else len(ref)
    return redact_text(ref[:start]) + ref[start:]


def redact_document(document: Document) -> Document:
    """Redact text, full_text, subject and ingest notes, and the ``input_ref``; record what the record's own
    fields held in ``pii_redactions`` (a file name's address is the file's, counted in none of its records)."""
    found: dict[str, Found] = {}

    def redact(value: str | None) -> str | None:
        return redact_text(value, found) if value else value

    return {
        **document,
        "input_ref": redact_ref(document["input_ref"]),
        "text": redact(document["text"]),
        "full_text": redact(document.get("full_text")),
        "subject": redact(document.get("subject")),
        "ingest_notes": [redact(note) for note in document.get("ingest_notes") or []],
        "pii_redactions": counts(found),
    }


def redact_fields(row: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """A row with the named text fields redacted (dead-letter excerpts and errors hold raw input)."""
    return {**row, **{name: redact_text(row[name]) if row.get(name) else row.get(name) for name in names}}


def redact_dead_letter(row: dict[str, Any]) -> dict[str, Any]:
    """A dead-letter row with its excerpt and error redacted (they hold raw input), and its ``input_ref``."""
    return {**redact_fields(row, ("raw_excerpt", "error")), "input_ref": redact_ref(row["input_ref"])}
