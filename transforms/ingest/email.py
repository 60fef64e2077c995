"""Raw RFC-822 messages (single files, ``.eml``, Maildir files, mbox) to documents.

Bytes in, never assumed UTF-8: the standard library's ``email`` package (``policy.default``)
does MIME, RFC 2047 headers, quoted-printable and base64; declared charsets are tried
strictly and ``charset-normalizer`` detects the rest; HTML-only bodies go through
``inscriptis``; ``format=flowed`` bodies are unwrapped with ``formatflowed``; ``mail-parser-reply`` strips
top-posted history and signatures, and
``>``-quoted lines go too, so ``text`` holds the sender's own words (a forward's with no more than
"FYI" above it: the forwarded message's). Addresses, thread
(References root, In-Reply-To), attachments and the date in UTC are kept as fields.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.utils
import functools
import hashlib
import re
from bisect import bisect_right
from collections.abc import Iterator
from datetime import UTC, datetime
from email import errors, policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesParser
from typing import BinaryIO

import charset_normalizer
import formatflowed
from charset_normalizer import CharsetMatch
from charset_normalizer.constant import IANA_SUPPORTED
from charset_normalizer.utils import is_multi_byte_encoding
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.html_properties import Display
from inscriptis.model.config import ParserConfig
from inscriptis.model.css import CssParse
from inscriptis.model.html_element import HtmlElement
from inscriptis.model.tag import CustomHtmlTagHandlerMapping
from lxml.html import HtmlElement as LxmlElement
from mailparser_reply import EmailMessage as ReplyThread
from mailparser_reply.constants import GENERIC_MAIL_SEPARATOR, OUTLOOK_MAIL_SEPARATOR

from transforms.clean import HTML_OPENING_PATTERN, html_tree, tree_text
from transforms.records import Document, Failure, excerpt, new_document, without_surrogates

_HEADERS_THAT_MAKE_AN_EMAIL = ("from", "to", "subject", "date", "message-id", "received", "mime-version")
_ENVELOPE = re.compile(rb"""
    From\ \S+\ +                                                         # sender: MAILER-DAEMON, an address, "-"
    (?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\ +(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\ +\d{1,2}\ +
    (?:\d{1,2}:\d{2}(?::\d{2})?(?:\ +(?:[A-Z]{3,5}|[+-]\d{4}))?\ +\d{4}  # asctime's time and year, a zone between
     |\d{4}\ +\d{1,2}:\d{2}(?::\d{2})?)                                  # or the year before the time
    (?:\ +(?:[A-Z]{3,5}|[+-]\d{4}))?\s*$""", re.VERBOSE)
"""An mbox ``From `` envelope line: a sender and an asctime date (``From MAILER-DAEMON Fri Jul  8 12:08:34 2011``), as
mail tools write it with a zone or the year moved; a body line like "From 9:00 to 17:00 we are open" is not one."""
_QUOTED_FROM = re.compile(rb"(?m)^>(>*From )")
REPLY_LANGUAGES = ("en", "de", "fr", "es", "it", "nl")
"""Languages whose reply headers ("On ... wrote:", "Am ... schrieb") and sign-offs the reply parser knows."""
SIGN_OFF_WORDS = 4
"""Most words the first line of a signature may have: "Best regards," or "Thanks!" opens one, while "Thanks, but
it did not help at all." is the message; the parser took any line starting with a sign-off word for a signature
and dropped the rest of the body with it."""
REPLY_STRIP_MAX_CHARS = 200_000
"""Longer bodies are not reply-stripped: the reply parser's regexes take minutes on megabytes, and the
clean stage refuses such texts by size anyway (``text_too_large``)."""


def _reply_patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The reply parser's header, signature (``-`` lists kept: a "- item" line is a list, not a signature; "-John"
    signs off only without a space) and disclaimer patterns for :data:`REPLY_LANGUAGES`. They depend on the
    languages alone, so they are built once here: a parser per email also normalised its text, unused."""
    parser = ReplyThread(text="", languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True)
    return _linear_header(parser.HEADER_REGEX), _signature_head(parser.SIGNATURE_REGEX), parser.DISCLAIMERS_REGEX


_CONTINUED = r"(?:.{2,}:$|.+\n.+:$)"
"""What follows "schrieb" in a German attribution that ends its line or the next one with a colon."""
_ECRIT = r"a \u00e9crit[a-zA-Z0-9.:;<>()&@ -]*:"
_ATTRIBUTIONS = {
    **{rf"(?!{word}[.\s]*{word}\s(.+?\s?.+?)\s{verb})((?:> ?)*{word}\s(?:.+?\s?.+?)\s?{verb})$":
       rf"(?!{word}[.\s]*{word}\s(?:.{{2,}}|.+\n.+)\s{verb})((?:> ?)*{word}\s(?:(?=.[^\S\n])(?:.{{3,}}{verb}$"
       rf"|.{{3,}}\n{verb}$)|.{{2,}}{verb}$|.{{2,}}\n{verb}$|.+\n.+{verb}$|.+\n.+\n{verb}$))$"
       for word, verb in (("On", "wrote:"), ("Il", "ha scritto:"), ("Op", "schreef:"))},
    r"(?!Am.*Am\s.+?schrieb.*:)((?:> ?)*Am\s(?:.+?\s?)schrieb\s(?:.+?\s?.+?):)$":
        r"(?!Am(?>.*?Am[^\S\n])(?>.+?schrieb).*:|Am.*Am\n(?>.+?schrieb).*:)((?:> ?)*Am\s(?:(?>.+?schrieb[^\S\n])"
        rf"{_CONTINUED}|.+schrieb\n{_CONTINUED}|.+\nschrieb\s{_CONTINUED}))$",
    rf"(?!Le.*Le\s.+?{_ECRIT})": rf"(?!Le(?>.*?Le[^\S\n]).+?{_ECRIT}|Le.*Le\n.+?{_ECRIT})",
}
"""The reply parser's attribution patterns ("On ... wrote:", "Am ... schrieb ...:", "Le ... a \u00e9crit :") and the
look-aheads that keep a line opening with the word twice out, each with one that matches where it does, from the same
place to the same end, in time proportional to the lines it reads. The parser's try every split of a line into the
two or three parts their lazy ``.+?`` take, so a long line opening with "On", "Il", "Op", "Am" or "Le" (a paragraph
unwrapped from ``format=flowed`` or HTML) took time in the square of its length, and one with many "schrieb" in the
cube: 15 s for a 30,000-character "On ..." line, 11 s for 3,400 characters of "Am ... schrieb ...". A match
of the parser's ends at the verb at the end of the line where the first part can end (the line the word opens, or
the next when that first line is all the first part), or at a line of the verb alone just below it; the alternatives
here are those ends in the order the parser tries them."""


def _linear_header(header: re.Pattern[str]) -> re.Pattern[str]:
    """The parser's header pattern with :data:`_ATTRIBUTIONS` put in; an attribution pattern of another version of the
    parser stays as it is."""
    pattern = header.pattern
    for slow, linear in _ATTRIBUTIONS.items():
        pattern = pattern.replace(slow, linear)
    return re.compile(pattern, header.flags)


_SIGNATURE_TAIL = r"(.|\s)*)"


def _signature_head(signature: re.Pattern[str]) -> re.Pattern[str]:
    r"""The parser's signature pattern without its tail ``(.|\s)*``, which takes the rest of the text into every match,
    and with its blank runs (``\s*^``, ``\n{2,}``) taken whole from their start only: what follows them never starts
    with a blank, so a match in one starts where it begins (the search's start excepted: :func:`without_signature`
    searches on from a line's end, which :func:`_normalized` leaves without blanks). A body of many rejected
    sign-off lines ("Thanks, but ...", ``> --``) was read to its end at each of them, and one with a long run of
    blank lines was scanned to the run's end from each of its positions: quadratic, hours for a 200,000-character
    body. The matches start where the parser's do, and :func:`without_signature` reads a match
    as running on to the text's end, as the parser's did."""
    pattern = signature.pattern
    if not pattern.endswith(_SIGNATURE_TAIL):
        return signature
    pattern = pattern.removesuffix(_SIGNATURE_TAIL) + ")"
    pattern = pattern.replace(r"\s*^", r"(?<!\s)\s*+^").replace(r"(\n{2,} ?", r"((?<!\n)\n{2,}+ ?")
    return re.compile(pattern, signature.flags)


_REPLY_HEADER, _REPLY_SIGNATURE, _REPLY_DISCLAIMERS = _reply_patterns()


class _ReusingHeaderRegistry(HeaderRegistry):
    """``policy.default``'s header factory, each header class built once and parsed short headers kept.

    The standard factory builds a new class on every header fetch, and the message parses its Content-Type again
    at each ``get_content_type``, ``get_param`` or ``get_filename`` (eight times for a plain text email): header
    parsing was a third of the time to read the bench corpus's emails. Header objects are immutable strings, so a
    parsed one serves every message that has the same header line.
    """

    def __getitem__(self, name: str) -> type[BaseHeader]:
        return self._header_class(name.lower())

    @functools.cache  # noqa: B019 - one module-level registry, never freed anyway
    def _header_class(self, lowered_name: str) -> type[BaseHeader]:
        return super().__getitem__(lowered_name)

    def __call__(self, name: str, value: str) -> BaseHeader:
        if name.lower() in MIME_HEADERS and len(value) > MIME_HEADER_CHARS:
            value = cut_mime_header(value)
        try:
            return self._parsed(name, value) if len(value) <= 256 else self._parsed_long(name, value)
        except ValueError:  # an RFC 2231 parameter in a codec that is no charset, or with a NUL in its charset
            return self._header_class(UNPARSED_HEADER)(name, value)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - as above
    def _parsed(self, name: str, value: str) -> BaseHeader:
        return super().__call__(name, value)

    @functools.lru_cache(maxsize=16)  # noqa: B019 - as above; a few, since they are long
    def _parsed_long(self, name: str, value: str) -> BaseHeader:
        """A long header parsed once for all the fetches of its message (a Content-Type of 4,000 characters:
        0.06 s a parse, fourteen parses)."""
        return super().__call__(name, value)


MIME_HEADERS = frozenset({"content-type", "content-disposition", "content-transfer-encoding"})
"""The headers the email package parses itself, again at each fetch, whatever :func:`header` cuts."""
MIME_HEADER_CHARS = 4096
"""A MIME header is parsed up to its last parameter that ends within this many characters (an RFC 2231 file name
of 100 Chinese characters takes about 1,000). Its parameter parser takes time in the square of the header's length:
a Content-Type of 48,000 characters of junk parameters took a minute to read, and one of 200,000 would take 15."""


def cut_mime_header(value: str) -> str:
    """``value`` up to its last ``;`` within :data:`MIME_HEADER_CHARS` characters (or cut there, if none)."""
    head = value[:MIME_HEADER_CHARS]
    return head[:head.rfind(";")] if ";" in head else head


UNPARSED_HEADER = "x-unparsed"
"""A name no header class is registered for: a header that its own class cannot parse (``filename*=undefined''x``,
a codec that is no charset) is built as this one's, unstructured text, as the email package keeps a parameter in an
unknown charset. It raised at every fetch of the header, and the message was lost."""
MAIL_POLICY = policy.default.clone(header_factory=_ReusingHeaderRegistry())
"""How messages are parsed: the standard library's modern policy, with headers parsed once (see above)."""
_REPLY_HEADER_HINT = re.compile(
    r"wrote:|schrieb|a \u00e9crit|escribi\u00f3:|ha scritto:|schreef:|original message"
    r"|^(?:> ?)*[* ]*(?:from|sent|to|subject|date|cc|organi[sz]ation|von|gesendet|an|betreff|datum|de|envoy\u00e9"
    r"|\u00e0|objet|enviado|para|asunto|fecha|organizaci\u00f3n|da|inviato|a|oggetto|data|van|verzonden|aan"
    r"|onderwerp| )? ?:", re.IGNORECASE | re.MULTILINE)
"""Something every match of the reply header pattern holds: an attribution's verb, a separator, or a line opening
with a header field. That pattern tries its look-aheads at every line and took 0.8 s of the bench corpus's 4.2 s of
reading and cleaning; a body without any of these cannot match it, and most bodies have none."""
_ATTRIBUTION_MAX_CHARS = 200
_NOT_CONTROL = bytes(byte for byte in range(256) if not (byte < 9 or 13 < byte < 32))
"""Every byte but the control characters text never has (tab, line breaks, form feed and carriage return are text)."""
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_MAILDIR_INFO = re.compile(r"[:!]2,[A-Za-z]*$")
PROMPTS = ("mysql", "mariadb", "sqlite", "SQL", "irb", "ftp", "sftp", "lftp", "gdb", "kd", "hive", "cqlsh", "scala",
           "julia", "ghci", "Prelude", "jshell", "gnuplot", "telnet", "ntpq")
"""Interactive programs whose prompt is ``name>``, spelt as they print it: a pasted session's ``mysql> SELECT ...``
is the sender's text, while Supercite quotes the same way with the writer's initials or name (``JD>``, ``Skip>``)."""
_QUOTED_LINE = re.compile(rf"^\s*(?:>|(?!(?:{'|'.join(PROMPTS)})>)[A-Za-z]{{1,15}}>(?:\s|$))")
"""A quoted line: ``> text``, or Supercite's ``Name> text`` unless the name is a program's prompt."""
_ATTRIBUTION = re.compile(r"\b(wrote|writes|said|schrieb|a écrit|escribió|ha scritto|schreef)\s*:\s*$"
                          r"|^\s*Op\s.+\sschreef\s.+<[^<>\s]+@[^<>\s]+>\s*:\s*$", re.IGNORECASE)
"""An "X wrote:" line; Dutch Gmail puts the writer after the verb: "Op <date> schreef <name> <<address>>:"."""


def hash_address(address: str) -> str:
    """Pseudonymise an address: the same sender hashes the same everywhere, the address is not stored."""
    return "sha256:" + hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()[:16]


STRAY_NUL_SHARE = 0.001
"""NUL bytes a text may carry (at least one): a mail client's stray NUL must not lose the message, while compressed
or encrypted data has a NUL in every 256 bytes (16 in 4 KiB, and never 4 or fewer but once in 2,500 heads)."""


def looks_binary(raw: bytes) -> bool:
    """More than a stray NUL among other control characters, or mostly control characters, in the first 4 KiB: not
    text of any charset.

    Compressed or encrypted data has 26 other control bytes for each NUL; NULs an export left in text come alone, and
    a short message with two of them was a ``binary`` dead letter, not labeled with the note that they were removed.
    """
    head = raw[:4096]
    nuls = head.count(b"\x00")
    control = len(head.translate(None, _NOT_CONTROL))  # C speed: a byte loop took 0.06 s per 500 emails
    if nuls > max(1, len(head) * STRAY_NUL_SHARE) and control - nuls >= nuls:
        return True
    return bool(head) and control / len(head) > 0.1


def decode_bytes(payload: bytes, declared: str | None, notes: list[str]) -> str:
    """Decode with the declared charset when it fits, else detect; say what was done in ``notes``."""
    if declared:
        text = _declared_decoding(payload, declared, notes)
        if text is not None:
            return without_surrogates(text)
    else:
        try:
            return payload.decode("ascii")
        except UnicodeDecodeError:
            notes.append("undeclared 8-bit charset")
    detected = detect_charset(payload)
    if detected is not None:
        notes.append(f"charset detected: {detected}")
        return without_surrogates(payload.decode(detected, errors="replace"))
    notes.append("charset unknown: decoded as utf-8 with replacement")
    return payload.decode("utf-8", errors="replace")


UNDECODABLE_SHARE = 0.01
"""Undecodable sequences a declared charset may have and still be kept (at least one): a stray byte, a broken
quoted-printable escape or a cut last character is one error however long the text, while a wrong declaration
fails on every non-ASCII character it misreads, several in any sentence of a language that needs them."""
_PRINTABLE_ASCII = b"\t\n\r" + bytes(range(0x20, 0x7F))
_WIDE_UNICODE = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")


def _declared_decoding(payload: bytes, declared: str, notes: list[str]) -> str | None:
    """The text in the declared charset, with U+FFFD for a few undecodable bytes; None when the charset does not fit.

    ASCII declares no byte above 127, so an 8-bit byte in an ASCII body is a character of an undeclared
    charset, not damage: detection reads it. A charset that reads fewer non-ASCII characters than it fails
    on has not shown that it fits either. UTF-16 decodes almost any even number of bytes, so a body that is
    all printable ASCII (no BOM, no NUL) is ASCII mislabelled: ``Hello`` would read ``效汬``.
    """
    try:
        codec = codecs.lookup(declared).name
        if codec in _WIDE_UNICODE and payload and not payload.translate(None, _PRINTABLE_ASCII):
            notes.append(f"declared charset {declared} does not fit an ASCII body")
            return payload.decode("ascii")
        try:
            return payload.decode(codec)
        except UnicodeDecodeError:
            replaced = payload.decode(codec, errors="replace")
            readable = payload.decode(codec, errors="ignore")
    except (LookupError, ValueError) as error:  # ValueError: a codec that is no charset ("undefined", "idna"), a NUL
        notes.append(f"declared charset {declared} failed ({type(error).__name__})")
        return None
    undecodable = replaced.count("\ufffd") - readable.count("\ufffd")
    non_ascii = len(readable) - len(readable.encode("ascii", errors="ignore"))
    if codec == "ascii" or undecodable > max(1, len(replaced) * UNDECODABLE_SHARE) or non_ascii <= undecodable:
        notes.append(f"declared charset {declared} failed (UnicodeDecodeError)")
        return None
    notes.append(f"declared charset {declared} kept: {undecodable} undecodable byte sequence"
                 f"{'s' if undecodable > 1 else ''} replaced")
    return replaced


DETECTION_BYTES = 64 << 10
"""Text parts read along with an undeclared 8-bit header to tell its charset."""
MAIL_CHARSETS = ("utf_8", "cp1252", "iso8859_15", "cp1251", "koi8_r", "cp1250", "iso8859_2", "gbk", "big5",
                 "euc_jp", "shift_jis", "euc_kr")
"""Tie-break among charsets that read a text as well as the best: the order of their use in mail. On short
western text charset-normalizer ranks cp1250 level with cp1252 and lists it first (``Crème`` read as ``Crčme``)."""
CHAOS_TOLERANCE = 0.1
COHERENCE_TOLERANCE = 0.05
"""How far a single-byte charset's scores may trail the best match's and still count as reading the text as well.
On a sentence one character read as a symbol costs several hundredths of chaos (``…`` in cp1252 costs 0.074 against
iso8859_10, which takes it for an unprinted control and reads ``très déçu`` as ``trčs déįu``) and a few letters
shift coherence by as much, while a wrong code page misreads every accented letter (cp1250 reading iso8859-2
Polish: 0.15). Multi-byte charsets are not compared so: their scores are near on text in the wrong one
(big5 reads EUC-JP Japanese at +0.025), and their byte structure, not letters, tells them apart."""


def detect_charset(payload: bytes) -> str | None:
    """The charset an undeclared 8-bit text most likely uses, among ASCII-compatible ones only.

    Mail text travels in ASCII-compatible charsets (UTF-16 arrives declared and base64-encoded), yet
    the detector stops at the first multi-byte charset that decodes cleanly: ``Caf\\xe9`` was read as
    UTF-16 (``䍡曩``) and KOI8-R Russian as Shift JIS 2004, so those charsets are never tried.
    """
    matches = list(charset_normalizer.from_bytes(payload, cp_exclusion=_NOT_ASCII_COMPATIBLE))
    if not matches:
        return None
    best = matches[0]
    tied = {charset for match in matches if _reads_as_well(match, best) for charset in match.could_be_from_charset}
    return next((charset for charset in MAIL_CHARSETS if charset in tied), best.encoding)


def _reads_as_well(match: CharsetMatch, best: CharsetMatch) -> bool:
    """Exact ties between any charsets; near ties, within the tolerances above, between single-byte ones only."""
    if (match.chaos, match.coherence) == (best.chaos, best.coherence):
        return True
    return (not is_multi_byte_encoding(best.encoding) and not is_multi_byte_encoding(match.encoding)
            and match.chaos <= best.chaos + CHAOS_TOLERANCE and match.coherence >= best.coherence - COHERENCE_TOLERANCE)


def _ascii_compatible(charset: str) -> bool:
    printable_ascii = bytes(range(0x20, 0x7F))
    try:
        return printable_ascii.decode(charset) == printable_ascii.decode("ascii")
    except (LookupError, UnicodeDecodeError):
        return False


_NOT_ASCII_COMPATIBLE = [charset for charset in IANA_SUPPORTED if not _ascii_compatible(charset)]


HEADER_CHARS = 64 << 10
"""Characters of one header that are parsed; the email package's header parser takes time that grows with
the square of a header's length (a 1 MB Subject: 32 s), so the rest is cut off, with a note."""


def header(message: EmailMessage, name: str, notes: list[str]) -> str | None:
    """A decoded header (RFC 2047 words resolved); None when absent, raw text when malformed."""
    raw = next((raw for key, raw in message.raw_items() if key.lower() == name), None)
    if raw is None:
        return None
    if len(raw) > HEADER_CHARS:
        notes.append(f"header {name} cut at {HEADER_CHARS:,} of {len(raw):,} characters")
        raw = raw[:HEADER_CHARS]
    try:
        value = message.policy.header_fetch_parse(name, raw)
    except Exception as error:  # noqa: BLE001 - any header defect must not lose the message
        notes.append(f"header {name} unparseable ({type(error).__name__})")
        value = raw
    if "\ufffd" in str(value):
        value = _undeclared_8bit_header(message, name, raw, notes) or value
    return without_surrogates(" ".join(str(value).split()))


def _undeclared_8bit_header(message: EmailMessage, name: str, raw: str, notes: list[str]) -> str | None:
    """Raw 8-bit header bytes (``raw``, as :func:`header` read and cut it; no RFC 2047 words) decoded
    instead of shown as U+FFFD.

    A header is too short for reliable detection, so the charsets the message declares for its
    parts are tried first, then detection over the header and the text parts together: spam that
    puts raw 8-bit bytes in its Subject writes its body in the same charset.
    """
    if "=?" in raw:
        return None
    raw_bytes = raw.encode("utf-8", errors="surrogateescape")
    for charset in dict.fromkeys(filter(None, (part.get_content_charset() for part in message.walk()))):
        try:
            decoded = raw_bytes.decode(charset)
        except (LookupError, ValueError):  # ValueError: UnicodeDecodeError, a codec that is no charset, a NUL in it
            continue
        notes.append(f"header {name}: decoded as {charset}, the message's declared charset")
        return decoded
    texts = (part.get_payload(decode=True) or b"" for part in message.walk() if part.get_content_maintype() == "text")
    detected = detect_charset(raw_bytes + b"\n" + b"\n".join(texts)[:DETECTION_BYTES])
    if detected is None:
        notes.append(f"header {name}: charset unknown: decoded as utf-8 with replacement")
        return raw_bytes.decode("utf-8", errors="replace")
    notes.append(f"header {name}: charset detected with the message's text: {detected}")
    return raw_bytes.decode(detected, errors="replace")


def part_text(part: EmailMessage, notes: list[str]) -> str:
    payload = part.get_payload(decode=True) or b""
    if part.get("content-transfer-encoding", "").strip().lower() == "base64" and any(
            isinstance(defect, errors.InvalidBase64LengthDefect | errors.InvalidBase64CharactersDefect)
            for defect in part.defects):
        payload = _base64_then_text(part.get_payload(), notes) or payload
    return decode_bytes(payload, part.get_content_charset(), notes)


def _base64_then_text(raw: str, notes: list[str]) -> bytes | None:
    """A base64 body that a list server appended a plain-text footer to: the email package then
    returns the encoded text as is. Decode the block up to the first blank line, keep the rest."""
    encoded, _, rest = raw.strip().partition("\n\n")
    try:
        decoded = base64.b64decode("".join(encoded.split()), validate=True)
    except binascii.Error:
        return None
    notes.append("plain text after the base64 body (a list footer) kept as text")
    return decoded + b"\n\n" + rest.encode("ascii", errors="replace")


_DELIMITER_LINE = re.compile(rb'^--([^\s"]{1,70})[ \t]*\r?\n[Cc]ontent-[\w-]+:', re.MULTILINE)
"""A part's opening delimiter line, as a MIME body holds it: ``--`` and a boundary, then the part's first header."""
_HTML_MARKUP = re.compile(rb"</(?:html|body|p|div|table|td|font|a)\s*>|" + HTML_OPENING_PATTERN.encode("ascii"),
                          re.IGNORECASE)
"""A body of HTML: a closing tag of the elements mail is built of, or HTML written with opening tags only
(:data:`~transforms.clean.HTML_OPENING_PATTERN`: ``<p>Hello,<p>The jug arrived cracked.``, ``<font face="Arial">``).
Fewer closing tags than a post's: list mail talks about markup in pairs ("wrap the report with <pre></pre>", in
SpamAssassin ham)."""


def repair_multiparts(part: EmailMessage, notes: list[str]) -> None:
    """Give each multipart the email package could not split its parts back, or make it one text part.

    A multipart whose ``boundary`` parameter is missing or not the one its body uses (a gateway rewrote the
    Content-Type) comes out of the parser as one string with a defect, and no text part was found in it: the body
    was lost and the message labeled by its subject. Its parts are read at the delimiter its body does use; a body
    with no delimiter at all is read as the text (or HTML) it is."""
    if part.is_multipart():
        for child in part.iter_parts():
            repair_multiparts(child, notes)
        return
    if part.get_content_maintype() != "multipart":
        return
    declared = part.get_param("boundary")
    problem = f'boundary "{declared}" not in the body' if declared else "no boundary parameter"
    payload = part.get_payload(decode=True) or b""
    delimiter = _DELIMITER_LINE.search(payload)
    if delimiter is not None:
        boundary = delimiter.group(1).decode("ascii", errors="replace")
        head = f'Content-Type: {part.get_content_type()}; boundary="{boundary}"\n\n'.encode()
        reparsed = BytesParser(policy=part.policy).parsebytes(head + payload)
        if reparsed.is_multipart():
            part.set_payload(reparsed.get_payload())
            part.set_param("boundary", boundary)
            _note_once(notes, f'MIME structure broken: {problem}; parts read at the body\'s "--{boundary}"')
            for child in part.iter_parts():
                repair_multiparts(child, notes)
            return
    subtype = "html" if _HTML_MARKUP.search(payload) else "plain"
    charset = part.get_param("charset")
    part.replace_header("Content-Type", f"text/{subtype}")
    if charset:
        part.set_param("charset", str(charset))
    _note_once(notes, f"MIME structure broken: {problem}; body read as one text/{subtype} part")


def _note_once(notes: list[str], note: str) -> None:
    """Add a note unless it is there: a message of many broken parts says so once."""
    if note not in notes:
        notes.append(note)


def body_text(message: EmailMessage, notes: list[str]) -> str:
    """The message's own text: every inline text part in order (a client that splits a body around an image sends
    several), of each ``multipart/alternative`` the plain part, or the HTML one turned into readable text where the
    plain one is blank or a stub (:func:`_unless_stub`). Attachments (a file name, or disposition attachment, an
    inline log included) and attached emails are not the message's words and are left out; a message with nothing
    else is labeled by its subject."""
    try:  # an inline part with a file name is the body when there is no other (spam often names its one part)
        parts = _own_text_parts(message, notes) or _own_text_parts(message, notes, named_inline=True)
    except Exception as error:  # noqa: BLE001 - a broken MIME tree falls back to the first text part
        notes.append(f"MIME structure broken ({type(error).__name__})")
        parts = [next((p for p in message.walk() if p.get_content_maintype() == "text"), None)]
    texts = [_readable(part, notes) for part in parts if part is not None]
    return "\n\n".join(text for text in texts if text.strip())


def _own_text_parts(part: EmailMessage, notes: list[str], named_inline: bool = False) -> list[EmailMessage]:
    if part.get_content_type() == "message/rfc822" or _is_attachment(part, named_inline):
        return []
    if part.is_multipart():
        children = list(part.iter_parts())
        if part.get_content_subtype() != "alternative":
            return [text for child in children for text in _own_text_parts(child, notes, named_inline)]
        alternatives = sorted(children, key=_alternative_rank)  # stable: the sender's order within a rank
        for index, child in enumerate(alternatives):
            chosen = _own_text_parts(child, notes, named_inline)
            if _has_text(chosen):
                return _unless_stub(chosen, alternatives[index + 1:], notes, named_inline)
        return []
    return [part] if part.get_content_type() in ("text/plain", "text/html") else []


def _has_text(parts: list[EmailMessage]) -> bool:
    return any((part.get_payload(decode=True) or b"").strip() for part in parts)


STUB_MAX_WORDS = 20
STUB_MAX_SHARE = 0.25
"""A plain alternative of fewer words than this, and under this share of its HTML alternative's words, is a stub: a
newsletter's "View this email in your browser: https://..." over the whole newsletter in HTML."""


def _unless_stub(chosen: list[EmailMessage], later: list[EmailMessage], notes: list[str],
                 named_inline: bool) -> list[EmailMessage]:
    """The chosen alternative (plain text: the sender's own), or the HTML one among the ``later`` alternatives where
    the plain one is a stub (:data:`STUB_MAX_WORDS`, :data:`STUB_MAX_SHARE`)."""
    if any(part.get_content_type() != "text/plain" for part in chosen):
        return chosen
    plain_words = sum(len(part_text(part, []).split()) for part in chosen)
    if plain_words >= STUB_MAX_WORDS:
        return chosen
    for alternative in later:
        html = _own_text_parts(alternative, notes, named_inline)
        if html and all(part.get_content_type() == "text/html" for part in html) and _has_text(html):
            html_words = sum(len(html_text(part_text(part, [])).split()) for part in html)
            if plain_words >= STUB_MAX_SHARE * html_words:
                return chosen
            notes.append(f"plain-text alternative a stub ({plain_words} words, the HTML {html_words}): HTML read")
            return html
    return chosen


def _is_attachment(part: EmailMessage, named_inline: bool = False) -> bool:
    """Disposition attachment, or a file name on an inline part (a log pasted as a file) unless ``named_inline``."""
    if part.get_content_disposition() == "attachment":
        return True
    return not named_inline and not part.is_multipart() and bool(filename(part))


def _alternative_rank(part: EmailMessage) -> int:
    """Plain text first, then HTML (alone or in a ``multipart/related`` with its images), then anything else."""
    return {"text/plain": 0, "text/html": 1}.get(part.get_content_type(), 1 if part.is_multipart() else 2)


_TABLE_TAGS = ("table", "caption", "tr", "td", "th")
_CSS_PRIORITY = re.compile(r"!\s*important", re.IGNORECASE)
_INLINE_BOX = re.compile(r"(?:^|;)\s*display\s*:\s*inline-(?:block|flex|grid|table)\b", re.IGNORECASE)
_BOX_TAGS = ("button", "option", "select", "textarea")


def _style_without_priority(style: str, element: HtmlElement) -> None:
    """An inline style as inscriptis applies it, with ``!important`` dropped: inscriptis took ``none !important`` for
    a display other than none, and ``display: none !important`` is how email templates hide their preheader. An
    inline box (``display: inline-block``, a template's button link) is set off by spaces (:func:`_boxed`)."""
    style = _CSS_PRIORITY.sub("", style)
    CssParse.attr_style(style, element)
    if _INLINE_BOX.search(style) and element.display is Display.inline:
        _boxed(element)


def _boxed(element: HtmlElement) -> HtmlElement:
    """Words of an element drawn as a box of its own (a button, an option, an ``inline-block`` link) set off by a
    space either side, as inscriptis's relaxed profile does for ``<span>``: side by side they read "Track
    orderManage" and "SmallMediumLarge" (one token where the reader sees two buttons)."""
    element.prefix, element.suffix, element.limit_whitespace_affixes = " ", " ", True
    return element


def _hide(_: str, element: HtmlElement) -> None:
    """The ``hidden`` attribute: the element is not rendered, as with ``display: none``."""
    element.display = Display.none


def _hide_classes(hidden: frozenset[str], classes: str, element: HtmlElement) -> None:
    """The ``class`` attribute: an element of a class the message's style sheet hides is not rendered."""
    if not hidden.isdisjoint(classes.split()):
        element.display = Display.none


@functools.lru_cache(maxsize=256)
def _mail_html_config(hidden: frozenset[str] = frozenset()) -> ParserConfig:
    """inscriptis's default (relaxed) conversion, with tables read cell after cell, a rule (``<hr>``) as a line
    break and hidden elements and ``<template>`` contents (inert: no client shows them) left out.

    Mail lays out columns and whole newsletters with tables; drawn as a grid, two cells with line breaks came out
    interleaved line by line, mixing their sentences. inscriptis joined the words either side of a rule ("Good<hr>Bad"
    read "GoodBad"). A hidden element (a preheader: the inbox preview line, ``display: none !important``,
    ``hidden``, or a class that the message's style sheet hides) is no text the reader sees. One config per set of
    hidden classes, kept: a newsletter's template hides the same ones in every issue.
    """
    css = {**CSS_PROFILES["relaxed"], **{tag: HtmlElement(display=Display.block) for tag in (*_TABLE_TAGS, "hr")},
           "template": HtmlElement(display=Display.none),
           **{tag: _boxed(HtmlElement(display=Display.inline)) for tag in _BOX_TAGS}}
    config = ParserConfig(css=css, custom_html_tag_handler_mapping=CustomHtmlTagHandlerMapping(
        start_tag_mapping=dict.fromkeys(_TABLE_TAGS), end_tag_mapping=dict.fromkeys(_TABLE_TAGS)))
    config.attribute_handler.attribute_mapping = {
        **config.attribute_handler.attribute_mapping, "style": _style_without_priority, "hidden": _hide,
        **({"class": functools.partial(_hide_classes, hidden)} if hidden else {})}
    return config


MAIL_HTML = _mail_html_config()
"""How an email's HTML becomes text (see :func:`_mail_html_config`)."""
_STYLE_TAG = re.compile(r"<style\b", re.IGNORECASE)
_CSS_COMMENT = re.compile(r"/\*.*?\*/|<!--|-->", re.DOTALL)
_CSS_TOKEN = re.compile(r"[{}]|[^{}]+")
_CLASS_SELECTOR = re.compile(r"\s*\.(-?[_a-zA-Z][\w-]*)\s*")


def html_text(html: str) -> str:
    """An email's HTML as the reader sees it (:data:`MAIL_HTML`), without the classes its ``<style>`` sheets hide."""
    tree = html_tree(html)
    if tree is None:
        return ""
    return tree_text(tree, _mail_html_config(_hidden_classes(tree)) if _STYLE_TAG.search(html) else MAIL_HTML)


def _hidden_classes(tree: LxmlElement) -> frozenset[str]:
    """The classes that the HTML's ``<style>`` elements hide (:func:`hidden_classes`)."""
    return frozenset(name for style in tree.iter("style") for name in hidden_classes(style.text_content()))


def hidden_classes(style_sheet: str) -> frozenset[str]:
    """Classes hidden by a top-level rule of plain class selectors (``.preheader, .spacer { display: none
    !important }``), as inscriptis reads the rule's declarations. A rule inside ``@media`` hides on some screens
    only, and other selectors (``td.x``, ``#id``, ``.a .b``) are left alone: not rendering words the reader sees
    would be worse than reading a hidden line."""
    hidden: set[str] = set()
    selector, depth = "", 0
    for token in _CSS_TOKEN.findall(_CSS_COMMENT.sub("", style_sheet)):
        if token == "{":
            depth += 1
        elif token == "}":
            depth = max(depth - 1, 0)
        elif depth == 0:
            selector = token.rsplit(";", 1)[-1]  # after an ``@import ...;`` or a stray semicolon
        elif depth == 1 and not selector.lstrip().startswith("@"):
            declared = HtmlElement()
            _style_without_priority(token, declared)
            if declared.display == Display.none:
                hidden.update(match.group(1) for group in selector.split(",")
                              if (match := _CLASS_SELECTOR.fullmatch(group)))
    return frozenset(hidden)


def _readable(part: EmailMessage, notes: list[str]) -> str:
    text = part_text(part, notes)
    if part.get_content_subtype() == "html":
        _note_once(notes, "html converted to text")
        text = html_text(text)
    elif str(part.get_param("format", "")).lower() == "flowed":
        text = unflowed(text, delete_space=str(part.get_param("delsp", "")).lower() == "yes")
    return text


def unflowed(text: str, delete_space: bool = False) -> str:
    """A ``format=flowed`` body (RFC 3676, Thunderbird's and Apple Mail's default) as its writer typed it: the
    lines the mailer broke with a trailing space joined into paragraphs, a stuffed leading space dropped. A quoted
    paragraph stays one line under its quote marks, so reply stripping drops it whole (read as fixed text, its
    wrapped tail looked like the sender's own words)."""
    flowed = "\r\n".join(_LINE_BREAK.split(text)).encode("utf-8", "surrogatepass")
    lines = []
    for info, chunk in formatflowed.decode(flowed, delete_space=delete_space, character_set="utf-8",
                                           error_handling="surrogatepass"):
        depth = info.get("quotedepth", 0)
        lines.append(f"{'>' * depth} {chunk}" if depth else chunk)
    return "\n".join(lines)


_LINE_BREAK = re.compile(r"\r?\n")


_TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
_SMIME_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_ENCRYPTED_SMIME = frozenset({"enveloped-data", "authenveloped-data"})


def unreadable_body_notes(part: EmailMessage) -> list[str]:
    """Why a message without text has none, where its body is there but cannot be read: encrypted (S/MIME, PGP/MIME),
    an S/MIME ``smime.p7m`` signed envelope, or Outlook's ``winmail.dat`` (TNEF). Such a message is labeled by its
    subject alone, as one with an empty body is; the note tells the two apart. Attached emails are not looked into."""
    content_type = part.get_content_type()
    if content_type == "multipart/encrypted":
        return ["body encrypted (PGP/MIME), not readable: labeled by its subject alone"]
    if content_type in _SMIME_TYPES:
        smime_type = str(part.get_param("smime-type", "")).lower()
        kind = ("encrypted" if smime_type in _ENCRYPTED_SMIME else "signed" if smime_type == "signed-data"
                else "encrypted or signed")
        return [f"body in an S/MIME smime.p7m ({kind}), not readable: labeled by its subject alone"]
    if content_type in _TNEF_TYPES or str(filename(part) or "").lower() == "winmail.dat":
        return ["body only in winmail.dat (Outlook TNEF), not readable: labeled by its subject alone"]
    if part.get_content_maintype() != "multipart" or not part.is_multipart():
        return []
    return list(dict.fromkeys(note for child in part.iter_parts() for note in unreadable_body_notes(child)))


def attachment_names(message: EmailMessage) -> list[str]:
    """File names of the attached parts, in message order.

    An attached email (``message/rfc822``) is one attachment: its own parts are not listed,
    because they belong to the forwarded message, not to this one. A message that is one file, with no multipart
    around it (Outlook's encrypted ``smime.p7m`` or ``winmail.dat``, a scanner's PDF, a bare attached email), lists
    that file.
    """
    if message.get_content_maintype() != "multipart":
        return [] if _own_text_parts(message, [], named_inline=True) else _part_attachments(message)
    names: list[str] = []
    for part in message.iter_parts():
        names.extend(_part_attachments(part))
    return names


def _part_attachments(part: EmailMessage) -> list[str]:
    name = filename(part)
    if part.get_content_type() == "message/rfc822":
        return [str(name or "message.eml")]
    if part.is_multipart():
        return [name for child in part.iter_parts() for name in _part_attachments(child)]
    if name or part.get_content_disposition() == "attachment":
        return [str(name or f"unnamed.{part.get_content_subtype()}")]
    return []


def filename(part: EmailMessage) -> str | None:
    """A part's file name; an RFC 2231 name in a codec that is no charset (``filename*=undefined''...``) or whose
    charset holds a NUL is taken undecoded, as the email package takes one in an unknown charset: it raised."""
    try:
        return part.get_filename()
    except ValueError:
        value = part.get_param("filename", None, "content-disposition") or part.get_param("name", None, "content-type")
        return email.utils.unquote(value[2] if isinstance(value, tuple) else str(value)).strip()


def strip_reply(text: str) -> str:
    """The newest reply without quoted history or signature; the whole text if nothing is left.

    The text is cut at the first match of the reply parser's header pattern that :func:`is_reply_header` confirms:
    the parser itself splits at every match, and a customer's own "Date: Friday works for me" or "On your website
    you wrote:" line lost the rest of the message. An attribution or quoted header that the sender answers below
    (:func:`answered_below`) is bottom-posting or interleaving, not a cut: the parser cut there and lost every
    answer, and :func:`drop_quoted_lines` takes the quotes out instead. The text below each header is built up from
    the last header (:class:`_Below`), so stripping takes time in proportion to the body however many headers it has.
    """
    if len(text) > REPLY_STRIP_MAX_CHARS:
        return text
    try:
        normalized = _normalized(text)
        cuts, answered, below, boundary = [], [], _Below(), len(normalized)
        for header in reversed(_reply_headers(normalized)):  # from the last: being answered depends on the cuts below
            below.prepend(normalized[header.end():boundary])
            if not answered_below(header.group(), below, _REPLY_SIGNATURE):
                cuts.append(header.span())
                below, boundary = _Below(), header.start()
            elif not _QUOTED_LINE.match(header.group().lstrip()):
                answered.append(header.span())  # an unquoted attribution goes with the quotes it introduces
                boundary = header.start()
            else:
                boundary = header.end()
        cuts, answered = [*reversed(cuts), (len(normalized), len(normalized))], answered[::-1]
        newest = _without(normalized, 0, cuts[0][0], answered).strip()
        if not newest and len(cuts) > 1:  # a body that opens with a header: the part after it, as the parser reads it
            newest = _without(normalized, cuts[0][1], cuts[1][0], answered).strip()
        newest = _DIVIDER.sub("\\1\n", newest)  # the sender's own dividers go, as in the parser, and cut nothing
        disclaimers = _REPLY_DISCLAIMERS.findall(newest)
    except Exception:  # noqa: BLE001 - a regex failure keeps the full body rather than losing it
        return text
    for disclaimer in disclaimers:
        newest = newest.replace(disclaimer.strip(), "")
    newest = without_trailing_dividers(without_signature(newest, _REPLY_SIGNATURE).strip()).rstrip()
    newest = _APP_TAGLINE.sub("", newest)
    return newest if newest else text


def _normalized(text: str) -> str:
    """Blanks around lines stripped as the parser's patterns expect them, with the divider lines that the parser's own
    normalization deletes: below quoted history one opens a list footer, which is no answer."""
    return "\n".join(line.strip() for line in text.replace("\r\n", "\n").split("\n"))


def _reply_headers(normalized: str) -> list[re.Match[str]]:
    """The matches of the reply parser's header pattern that :func:`is_reply_header` confirms."""
    if not _REPLY_HEADER_HINT.search(normalized):
        return []
    return [header for header in _REPLY_HEADER.finditer(normalized)
            if is_reply_header(header.group(), _next_text_line(normalized, header.end()))]


_BLANK_LINES_AHEAD = re.compile(r"(?:[^\S\n]*+\n)*+")


def _next_text_line(text: str, start: int) -> str:
    """The first line of ``text[start:]`` that has more than blanks, "" if none: read up to it only, where splitting
    the rest of the body at every header took time in the square of the number of headers."""
    opening = _BLANK_LINES_AHEAD.match(text, start).end()
    line_end = text.find("\n", opening)
    line = text[opening:line_end if line_end >= 0 else len(text)]
    return line if line.strip() else ""


FOOTER_MAX_SHARE = 0.5
"""Most of a text (in characters) a newsletter footer may take: a short notice's footer (the reason, the links, an
address, the copyright) is a third of it or more, while a "footer" longer than the rest is the message itself."""
FOOTER_LINE_MAX_WORDS = 40
_FOOTER_LINE = re.compile(
    r"\byou(?:'re| are| were)? receiv(?:ing|ed) (?:this|these|the|our|it)\b.{0,100}\b(?:because|since)\b"
    r"|\b(?:this|the) (?:e-?mail|message|newsletter) was sent to \S+@"
    r"|(?:^|[.!|\u2022\u00b7]\s*)(?:to )?unsubscribe\b"
    r"|\b(?:manage|update|change) (?:your )?(?:e-?mail |subscription |communication )?(?:preferences|subscriptions?)\b"
    r"|\bview (?:this (?:e-?mail|message) |it )?(?:in (?:your |a )?(?:web )?browser|online)\b"
    r"|(?:\u00a9|\(c\)|\bcopyright\b)\s*(?:19|20)\d{2}\b|\ball rights reserved\b", re.IGNORECASE)
"""A line only a mailing's footer writes: why you get it, unsubscribe and preference links, the copyright. A line
that mentions unsubscribing in a sentence of its own ("I clicked unsubscribe three times") is none."""
_FOOTER_COMPANION = re.compile(
    r"\b\d{1,5}[A-Za-z]?,? (?:[A-Z][\w'.-]* ){1,4}(?:St|Street|Ave|Avenue|Rd|Road|Blvd|Boulevard|Lane|Ln|Way"
    r"|Dr|Drive|Square|Sq|Place|Pl|Court|Ct|Plaza|Parkway|Pkwy)\b|\bP\.? ?O\.? Box \d"
    r"|\bprivacy (?:policy|notice)\b|^ ?[_-]{3,}$")
"""A line that belongs to a footer only next to a :data:`_FOOTER_LINE`: the postal address the law asks of a
mailing, links to the privacy policy, a divider. Alone at the end it is a letter's signature."""


def without_footer(text: str) -> str:
    """``text`` without the footer a newsletter or notice ends with: the trailing lines that :data:`_FOOTER_LINE`
    or :data:`_FOOTER_COMPANION` match, at least one of them a footer line, if they take no more than
    :data:`FOOTER_MAX_SHARE` of the text. Its words ("unsubscribe", "you are receiving this email because", "All
    rights reserved") are the mark of spam to a classifier trained on 2002 mail; ``full_text`` keeps them."""
    whole = text.rstrip()
    lines = whole.split("\n")
    start, footer_line = len(lines), False
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index].strip()
        if not line:
            continue
        if len(line.split()) <= FOOTER_LINE_MAX_WORDS and _FOOTER_LINE.search(line):
            footer_line = True
        elif not _FOOTER_COMPANION.search(line):
            break
        start = index
    kept = "\n".join(lines[:start]).rstrip()
    if not footer_line or not kept.strip() or len(whole) - len(kept) > FOOTER_MAX_SHARE * len(whole):
        return text
    return kept


_ARMOR_BEGIN = re.compile(r"-----BEGIN PGP (SIGNED MESSAGE|SIGNATURE|MESSAGE|PUBLIC KEY BLOCK)-----")
_ARMOR_HEADER = re.compile(r"[A-Za-z][\w-]*: ")
_ARMOR_NOTES = {
    "SIGNATURE": "inline PGP signature removed",
    "MESSAGE": "inline PGP encrypted block removed, not readable",
    "PUBLIC KEY BLOCK": "inline PGP key block removed",
}


def without_pgp_armor(body: str, notes: list[str]) -> str:
    """``body`` without the armour of inline (not PGP/MIME) OpenPGP: a clear-signed message (RFC 4880, 7) keeps
    its signed text, its ``- `` dash-escapes undone, and loses its ``BEGIN PGP SIGNED MESSAGE`` line, ``Hash:``
    header and signature block; an encrypted block or a pasted key is removed. Their base64 is no one's words:
    it took a short message's reading window and a dashboard's excerpt (20 SpamAssassin ham messages are
    clear-signed inline, one holds an encrypted block and one a key; the held-out spam figures did not move).
    Quoted armour (``> -----BEGIN ...``) goes with the quote; an unterminated block stays. A message left with no
    text is labeled by its subject, with a note that says why."""
    if "-----BEGIN PGP " not in body:
        return body
    lines = body.split("\n")
    ends: dict[str, list[int]] = {}  # each END line's places, listed once: searched on from each BEGIN, unterminated
    for at, line in enumerate(lines):  # blocks read the rest of the body each (6,000 of them: a second)
        if line.startswith("-----END PGP "):
            ends.setdefault(line.rstrip(), []).append(at)
    kept: list[str] = []
    signed = False
    index = 0
    while index < len(lines):
        begin = _ARMOR_BEGIN.fullmatch(lines[index].rstrip())
        if begin and begin.group(1) == "SIGNED MESSAGE":
            index += 1
            while index < len(lines) and _ARMOR_HEADER.match(lines[index]):
                index += 1
            if index < len(lines) and not lines[index].strip():
                index += 1
            signed = True
            continue
        if begin:
            closes = ends.get(f"-----END PGP {begin.group(1)}-----", [])
            after = bisect_right(closes, index)
            close = closes[after] if after < len(closes) else None
            if close is not None:
                _note_once(notes, _ARMOR_NOTES[begin.group(1)])
                index, signed = close + 1, False
                continue
        line = lines[index]
        kept.append(line[2:] if signed and line.startswith("- ") else line)
        index += 1
    text = "\n".join(kept)
    if not text.strip() and _ARMOR_NOTES["MESSAGE"] in notes:
        notes.append("body encrypted (inline PGP), not readable: labeled by its subject alone")
    return text


_FORWARD_MARKER = re.compile(
    r"^(?:-{2,} ?(?:Forwarded message|Weitergeleitete Nachricht|Message transféré|Mensaje reenviado"
    r"|Messaggio inoltrato|Doorgestuurd bericht) ?-{2,}"
    r"|(?:Begin forwarded message|Anfang der weitergeleiteten Nachricht|Début du message réexpédié"
    r"|Inicio del mensaje reenviado|Inizio messaggio inoltrato|Begin doorgestuurd bericht) ?:)$",
    re.MULTILINE | re.IGNORECASE)
"""The line that Gmail ("---------- Forwarded message ---------"), Thunderbird ("-------- Forwarded Message
--------") and Apple Mail ("Begin forwarded message:") put above a forwarded message, in :data:`REPLY_LANGUAGES`."""
FORWARD_NOTE_MAX_WORDS = 6
"""Most words of a forwarder's note that says nothing of its own ("FYI", "see below", "Forwarding a customer
complaint, see below"): the forwarded message is then the text. A longer note ("Can you check with the warehouse
...?") is the forwarder's message."""


def own_text(body: str) -> str:
    """The sender's own words: the newest reply without history, quotes and signature; of a forward whose note is
    empty or a few words (:data:`FORWARD_NOTE_MAX_WORDS`), the forwarded message's.

    The reply parser takes a forwarded message's From/Date block for quoted history, so "FYI" or "Begin forwarded
    message:" was all that was classified. A forward quoted in a reply's history (below a confirmed reply header)
    is history still."""
    reply = drop_quoted_lines(strip_reply(body))
    if len(body) > REPLY_STRIP_MAX_CHARS:
        return reply
    normalized = _normalized(body)
    marker = _FORWARD_MARKER.search(normalized)
    if marker is None or any(header.start() < marker.start() for header in _reply_headers(normalized)):
        return reply
    note = drop_quoted_lines(strip_reply(normalized[: marker.start()])).strip()
    if len(note.split()) > FORWARD_NOTE_MAX_WORDS:
        return note
    forwarded = drop_quoted_lines(strip_reply(_below_header_block(normalized[marker.end():]))).strip()
    return forwarded or reply


def _below_header_block(forwarded: str) -> str:
    """A forwarded message without the From/Date/Subject/To block its mailer wrote above it, up to the first blank
    line; a block is two header fields or more (Thunderbird starts with Subject, Gmail and Apple Mail with From)."""
    block, _, rest = forwarded.lstrip("\n").partition("\n\n")
    return rest if len(_HEADER_FIELD.findall(block)) >= 2 else forwarded


def answered_below(header: str, below: _Below, signature: re.Pattern[str]) -> bool:
    """Whether a reply header opens ``>``-quoted history that the sender answers below it (``below`` runs to the
    next cut): then the reply is bottom-posted or interleaved. A separator or an Outlook field block is always
    history, and quotes followed by nothing but a signature or a list footer are a top-posted reply's history."""
    field_block = not _QUOTED_LINE.match(header.lstrip()) and len(_HEADER_FIELD.findall(header)) >= 2
    if field_block or _SEPARATOR.search(header):
        return False
    return below.answered(signature)


class _Below:
    """The text below a reply header down to the next cut, as lines, last line first, built up from the last header:
    each header puts the text between it and the header below in front, and only the two lines that were in front
    are read again. Each line keeps where, at or below it, the nearest line with text, own line (not quoted and no
    :func:`_wrapped_quote`) and own line with text are, and how many own lines there are: :meth:`answered` then
    reads a few lines, where building and reading the whole text below each header took time in the square of the
    number of answered headers (4.7 s for 60,000 characters, a minute for 200,000)."""

    def __init__(self) -> None:
        self.lines, self.quoted = [""], [False]
        self.text_at: list[int] = []
        self.own_at: list[int] = []
        self.own_text_at: list[int] = []
        self.own_count: list[int] = []
        self._derive(0)

    def prepend(self, text: str) -> None:
        """Put ``text`` in front: its last line joins the front line, and the line behind that is read again, as
        whether it is a wrapped quote depends on the line before it."""
        settled = max(len(self.lines) - 2, 0)
        front = text.split("\n")
        front[-1] += self.lines.pop()
        self.quoted.pop()
        front.reverse()
        self.lines += front
        self.quoted += [bool(_QUOTED_LINE.match(line)) for line in front]
        for derived in (self.text_at, self.own_at, self.own_text_at, self.own_count):
            del derived[settled:]
        for index in range(settled, len(self.lines)):
            self._derive(index)

    def _derive(self, index: int) -> None:
        lines, quoted = self.lines, self.quoted
        wrapped = (0 < index < len(lines) - 1 and quoted[index + 1] and bool(lines[index + 1].strip(" >"))
                   and quoted[index - 1])
        own, has_text = not quoted[index] and not wrapped, bool(lines[index].strip())
        below = index - 1
        self.text_at.append(index if has_text else self.text_at[below] if index else -1)
        self.own_at.append(index if own else self.own_at[below] if index else -1)
        self.own_text_at.append(index if own and has_text else self.own_text_at[below] if index else -1)
        self.own_count.append(own + (self.own_count[below] if index else 0))

    def answered(self, signature: re.Pattern[str]) -> bool:
        """Whether the text opens with a quote and has own words above any divider line and signature: the first
        own line with text decides, with the own line after it and the number of blank own lines before it (none,
        one, more), as the signature pattern reads no further than those from where a match of it there starts."""
        front = len(self.lines) - 1
        first = self.text_at[front]
        own = self.own_text_at[front]
        if first < 0 or not self.quoted[first] or own < 0:
            return False
        blanks = self.own_count[front] - self.own_count[own]  # the own lines before it are blank, so empty
        after = self.own_at[own - 1] if own else -1
        sample = "\n" * min(blanks, 2) + self.lines[own] + (f"\n{self.lines[after]}" if after >= 0 else "")
        return bool(without_signature(_DIVIDER_LINE.split(sample, 1)[0], signature).strip())


def _wrapped_quote(lines: list[str], index: int) -> bool:
    """An unquoted line between two quoted ones, the first with text: the end of a quoted line that a mailer wrapped
    ("> ... can be" / "invisible." / "> It also ..."), not an answer."""
    return (0 < index < len(lines) - 1 and bool(_QUOTED_LINE.match(lines[index - 1]))
            and bool(lines[index - 1].strip(" >")) and bool(_QUOTED_LINE.match(lines[index + 1])))


_QUOTE_MARKS = re.compile(r"^\s*(?:[A-Za-z]{0,15}>\s?)+")
_CLOSED = re.compile(r"[.!?:;)\]\"']\s*$")
WRAPPED_QUOTE_MIN_CHARS = 50
"""A quoted line at least this long (without its marks) and open at its end can have been wrapped by a mailer."""
WRAPPED_TAIL_MAX_WORDS = 6
"""The most words a wrapped quote's spilled tail holds (1-3 in SpamAssassin's ham; a 40-character line at most)."""


def _wrapped_tail(lines: list[str], index: int) -> bool:
    """:func:`_wrapped_quote` that is surely no interleaved answer: the quoted line before it is long and its
    sentence open ("... glaciers" / "are" / "> melting faster ..."), and the tail short, so a "Yes." between a
    quoted question and the next quote stays."""
    if not _wrapped_quote(lines, index) or _QUOTED_LINE.match(lines[index]):
        return False
    quoted, tail = _QUOTE_MARKS.sub("", lines[index - 1]).rstrip(), lines[index].strip()
    return (len(quoted) >= WRAPPED_QUOTE_MIN_CHARS and not _CLOSED.search(quoted)
            and 0 < len(tail) <= 40 and len(tail.split()) <= WRAPPED_TAIL_MAX_WORDS)


def _without(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> str:
    """``text[start:end]`` less the spans (in order, not overlapping) that lie within it."""
    pieces, position = [], start
    for span_start, span_end in spans:
        if start <= span_start and span_end <= end:
            pieces.append(text[position:span_start])
            position = span_end
    return "".join(pieces) + text[position:end]


_SEPARATOR = re.compile(GENERIC_MAIL_SEPARATOR, re.MULTILINE | re.IGNORECASE)
_DIVIDER = re.compile(rf"([^\n]){OUTLOOK_MAIL_SEPARATOR}")
_RULE = r" ?[_-]{32,}"
_DIVIDER_LINE = re.compile(rf"^{_RULE}$", re.MULTILINE)
"""A line of dashes or underscores, as a list server puts above its footer ("____...\nWebdev mailing list")."""
_DIVIDER_ROW = re.compile(rf"{_RULE}[ \t]*")


def without_trailing_dividers(text: str) -> str:
    """``text`` without the divider lines it ends with, its first line excepted: Outlook on the web writes its line of
    underscores right below the reply, with no blank line between, so it stayed when the history below it was cut.
    Read from the end, a line at a time: a pattern for the run that ends the text was tried from every line of a body
    of many dividers and read it to its end each time (quadratic: 4 s for 200,000 characters)."""
    end = len(text)
    while (start := text.rfind("\n", 0, end)) >= 0 and _DIVIDER_ROW.fullmatch(text, start + 1, end):
        end = start
    return text[:end]


_APP_TAGLINE = re.compile(
    r"(?<!\n)\n+(?:Sent|Envoy\u00e9|Gesendet|Enviado|Inviato|Verzonden) (?:from|with|via|von|mit|de|depuis|avec|desde"
    r"|con|da|vanaf|met) [^\n]{0,60}\b(?:iPhone|iPad|Android|Galaxy|Samsung|Outlook|Mail|Gmail|Yahoo|Proton|Tuta"
    r"|Superhuman|Spark|BlackBerry|Windows)\b[^\n]{0,40}\s*\Z")
"""The line a mail app ends a message with ("Sent with Proton Mail secure email.", "Sent from Yahoo Mail on
Android", "Sent from Mail for Windows"): the reply parser knows only "Sent from my" and "Get Outlook for". It
names an app or a device, so "Sent from the warehouse on Monday." stays. A match starts where its line breaks do: tried
from each of a long run of them, it read the run to its end every time (quadratic)."""
_HEADER_FIELD = re.compile(r"^[>* ]*([^\W\d_]+) ?:[ *]*(.*)$", re.MULTILINE)
_SENDER_FIELDS = frozenset({"from", "von", "de", "da", "van"})
_TIME_FIELDS = frozenset({"sent", "date", "gesendet", "datum", "envoyé", "enviado", "fecha", "inviato", "data",
                          "verzonden"})
_DATED = re.compile(r"\b(?:19|20)\d{2}\b|\b\d{1,2}[./-]\d{1,2}[./-]\d{2,4}\b")
"""A date with its year, as mail clients write it in reply headers ("Mon, Jan 5, 2020", "05.01.20"); a customer's
"Friday" or "at 10:30" is not one."""


def is_reply_header(header: str, next_line: str) -> bool:
    """Whether a match of the reply parser's header pattern opens quoted history, not the sender's own words.

    The parser takes any two adjacent lines starting "Date:", "To:", "An:"... for an Outlook header block and any
    line "On ... wrote:" or "Am ... schrieb ...:" for an attribution. A real block says when (a Sent or Date field
    with a dated value) or who (a From field with an address); a real attribution names a date or an address, or
    a quote follows it (``next_line``, the first line below it with text: "On Aug 25 Joe wrote:" then "> ...")."""
    if _SEPARATOR.search(header):
        return True
    fields = [(name.lower(), value) for name, value in _HEADER_FIELD.findall(header)]
    if len(fields) >= 2:
        return any((name in _TIME_FIELDS and _DATED.search(value)) or (name in _SENDER_FIELDS and "@" in value)
                   for name, value in fields)
    return bool(_DATED.search(header) or "@" in header or _QUOTED_LINE.match(next_line))


def without_signature(text: str, signature: re.Pattern[str]) -> str:
    """``text`` up to the first match of the parser's signature pattern that starts like a sign-off
    (:data:`SIGN_OFF_WORDS`); a match on a longer line is the message, and the search goes on after it, as it does
    after a quoted sign-off (``> Thanks,``, ``> --``): that is the quoted writer's, and the answers below it stay."""
    position = 0
    while match := signature.search(text, position):
        opening = _LEADING_BLANKS.match(text, match.start()).end()  # the match runs on to the text's end
        line_end = text.find("\n", opening)
        first_line = text[opening:line_end if line_end >= 0 else len(text)]
        if len(first_line.split()) <= SIGN_OFF_WORDS and not _QUOTED_LINE.match(first_line):
            return text[: match.start()]
        position = text.find("\n", opening)
        if position < 0:
            break
    return text


_LEADING_BLANKS = re.compile(r"\s*")


def drop_quoted_lines(text: str) -> str:
    """Without ``>``-quoted lines, the tails of quoted lines a mailer wrapped (:func:`_wrapped_tail`) and the
    "X wrote:" lines that introduce them.

    ``mail-parser-reply`` cuts top-posted replies at the first quote; bottom-posted and
    interleaved replies keep their quotes, which are someone else's words. The whole text is
    kept when nothing but quotes would be left, or when it is a pasted Python session
    (:func:`_python_session`).
    """
    if len(text) > REPLY_STRIP_MAX_CHARS:
        return text
    lines = text.split("\n")
    if _python_session(lines):
        return text
    kept = [line for index, line in enumerate(lines)
            if not _QUOTED_LINE.match(line) and not _wrapped_tail(lines, index)
            and not (len(line) <= _ATTRIBUTION_MAX_CHARS and _ATTRIBUTION.search(line)
                     and _quote_follows(lines, index))]
    remainder = "\n".join(kept)
    return remainder if remainder.strip() else text


_PYTHON_PROMPT = re.compile(r"^\s*>>>(?: |$)")


def _python_session(lines: list[str]) -> bool:
    """Every quote-like line is ``>>> code`` and no "X wrote:" line introduces it: the interpreter's prompt, as
    pasted with its output; a third-level quote comes with first- or second-level quotes or an attribution."""
    quoted = [line for line in lines if _QUOTED_LINE.match(line)]
    return (bool(quoted) and all(_PYTHON_PROMPT.match(line) for line in quoted)
            and not any(_ATTRIBUTION.search(line) for line in lines))


def _quote_follows(lines: list[str], index: int) -> bool:
    """Whether the next line with text is quoted; read from ``index`` on, not from a copy of the lines after it,
    which took time in the square of the number of "X said:" lines (3.5 s for 196,000 characters of them)."""
    following = next((lines[at] for at in range(index + 1, len(lines)) if lines[at].strip()), "")
    return bool(_QUOTED_LINE.match(following))


_PREFIXED_OFFSET = re.compile(r"\b(?:GMT|UTC)\s*([+-]\d{4})\b", re.IGNORECASE)
_COLON_OFFSET = re.compile(r"([+-]\d{2}):(\d{2})(?=\s*(?:\(.*\))?\s*$)")
_TWELVE_HOUR = re.compile(r"\d\s*[AP]\.?M\b\.?", re.IGNORECASE)
_ZERO_LED_YEAR = re.compile(r"(?<![\w:+\-.])0\d{2,3}(?![\w:.])")
"""A year written with a leading zero (``0001``, ``000``): the only such number in a date, as a zone is signed and
a time has colons. The email package reads it as a two-digit year (0001 as 2001)."""


def parse_date(value: str | None, notes: list[str]) -> datetime | None:
    """An RFC 5322 date in UTC; a date without zone (``-0000`` or none) is taken as UTC and noted.

    Mailers also write ``+01:00`` and ``GMT-0500`` (the email package read both as no zone, so as UTC) and
    ``9:15 PM`` (read as 09:15): offsets are rewritten as RFC 5322 writes them, and a 12-hour time goes to
    dateutil, which reads the PM. A year before 1000 (``0001``, a mailer's unset clock) is unparseable: it was
    read as 2001."""
    if not value:
        return None
    value = _COLON_OFFSET.sub(r"\1\2", _PREFIXED_OFFSET.sub(r"\1", value.strip()))
    if _ZERO_LED_YEAR.search(value):
        notes.append("date unparseable")
        return None
    try:
        if _TWELVE_HOUR.search(value):
            from dateutil import parser as date_parser

            parsed = date_parser.parse(value)
        else:
            parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)  # overflows at the ends of the calendar: 31 Dec 9999 23:59 -1200
    except (TypeError, ValueError, IndexError, OverflowError):
        notes.append("date unparseable")
        return None
    notes.append("date without timezone: taken as UTC")
    return parsed.replace(tzinfo=UTC)


def sent_at(message: EmailMessage, notes: list[str]) -> datetime | None:
    """The Date header in UTC, else the time the first (newest) Received hop stamped on it."""
    created_at = parse_date(header(message, "date", notes), notes)
    if created_at is not None:
        return created_at
    received = _first_received(message)
    if received and ";" in received:
        created_at = parse_date(received.rsplit(";", 1)[1].strip(), [])
        if created_at is not None:
            notes.append("date taken from the Received header")
    return created_at


def _first_received(message: EmailMessage) -> str | None:
    try:
        values = message.get_all("received") or []
    except Exception:  # noqa: BLE001 - a malformed Received header only loses the fallback date
        return None
    return " ".join(str(values[0]).split()) if values else None


def message_ids(value: str | None) -> list[str]:
    """The ``<...>`` ids in a References or In-Reply-To header; comments and junk around them are dropped."""
    return _MESSAGE_ID.findall(value or "")


_BARE_ID = re.compile(r"[^<>\s]+@[^<>\s]+")


def first_message_id(value: str | None) -> str | None:
    """The first ``<...>`` id of a header, or the whole value in brackets when it is one id written without them
    (``abc@example.com``), as replies quote it: a root and its replies then share one ``thread_id``."""
    bare = (value or "").strip()
    return next(iter(message_ids(bare)), None) or (f"<{bare}>" if _BARE_ID.fullmatch(bare) else None)


def thread_of(message_id: str | None, in_reply_to: str | None, references: list[str]) -> str | None:
    """The conversation an email belongs to: the root Message-ID of its References chain.

    A reply without References falls back to its parent, and a message that replies to nothing
    starts its own thread, so a root and all its replies share one ``thread_id``.
    """
    if references:
        return references[0]
    return in_reply_to or message_id


def addresses(values: dict[str, str | None], hash_addresses: bool, notes: list[str]) -> list[str]:
    """Every distinct address in some address headers (name → value), in order; pseudonymised unless told
    otherwise. A header whose comments nest too deeply to parse gives none, with a note: its RecursionError made
    the whole message a dead letter, blamed on its MIME parts."""
    found: list[str] = []
    for name, value in values.items():
        try:
            found += [address for _, address in email.utils.getaddresses([value]) if "@" in address] if value else []
        except RecursionError:  # the parser reads each ``(`` of a comment a level deeper in Python's stack
            notes.append(f"header {name} nested too deeply to read its addresses: left out")
    unique = list(dict.fromkeys(address.strip() for address in found))
    return [hash_address(a) for a in unique] if hash_addresses else unique


def parse_email(raw: bytes, input_ref: str, hash_addresses: bool = True) -> Document | Failure:
    """One raw message to a document, or a failure saying why it is not a usable email; never raises.

    A message that the email package or this reader fails on is a dead letter of its own: raised, the error ended
    the whole mbox in one ``corrupt_file`` record, and every message after it was lost."""
    try:
        return _parse_email(raw, input_ref, hash_addresses)
    except RecursionError:  # the email package parses each MIME level, and each comment, a level deeper
        return Failure("email", input_ref, "parse", "unparseable_email", "MIME parts or a MIME header's comments "
                       "nested too deeply to parse", excerpt(raw))
    except Exception as error:  # noqa: BLE001 - one bad message must not lose the messages after it
        return Failure("email", input_ref, "parse", "unparseable_email",
                       f"message could not be parsed: {type(error).__name__}: {error}", excerpt(raw))


def _parse_email(raw: bytes, input_ref: str, hash_addresses: bool) -> Document | Failure:
    if looks_binary(raw):
        return Failure("email", input_ref, "parse", "binary", "binary content, not an RFC-822 message", excerpt(raw))
    notes: list[str] = []
    message = BytesParser(policy=MAIL_POLICY).parsebytes(raw)
    if not any(key.lower() in _HEADERS_THAT_MAKE_AN_EMAIL for key in message.keys()):
        return Failure("email", input_ref, "parse", "not_email", "no RFC-822 headers found", excerpt(raw))
    subject = header(message, "subject", notes)
    for name in sorted({key.lower() for part in message.walk() for key, value in part.raw_items()
                        if key.lower() in MIME_HEADERS and len(value) > MIME_HEADER_CHARS}):
        notes.append(f"header {name} read up to {MIME_HEADER_CHARS:,} characters")
    try:
        repair_multiparts(message, notes)
    except Exception as error:  # noqa: BLE001 - a repair that fails leaves the message as the parser read it
        notes.append(f"MIME structure broken ({type(error).__name__})")
    body = without_pgp_armor(body_text(message, notes), notes)
    sender = addresses({"from": header(message, "from", notes)}, hash_addresses, notes)
    recipients = addresses({name: header(message, name, notes) for name in ("to", "cc")}, hash_addresses, notes)
    declared_id = header(message, "message-id", notes)
    message_id = first_message_id(declared_id) or (declared_id or "").strip() or None
    parent = first_message_id(header(message, "in-reply-to", notes))
    if not body.strip():
        notes.extend(unreadable_body_notes(message))
    if len(body) > REPLY_STRIP_MAX_CHARS:
        notes.append(f"body over {REPLY_STRIP_MAX_CHARS:,} characters: replies not stripped")
    reply = without_footer(own_text(body))
    text = f"{subject}\n\n{reply}" if subject else reply
    return new_document(
        "email",
        input_ref,
        text,
        source_id=message_id,
        full_text=body,
        subject=subject,
        author=sender[0] if sender else None,
        recipients=recipients,
        in_reply_to=parent,
        thread_id=thread_of(message_id, parent, message_ids(header(message, "references", notes))),
        attachments=attachment_names(message),
        created_at=sent_at(message, notes),
        ingest_notes=notes,
    )


def split_mbox(handle: BinaryIO, name: str) -> Iterator[tuple[str, bytes]]:
    """(input_ref, raw message) for each message of an mbox stream, one message in memory at a time.

    A message starts at a ``From `` envelope line, a sender and a date (:data:`_ENVELOPE`), so a body line that
    happens to start with "From " does not split a message. No blank line need come before it: exports that write
    none merged every message into the first. An envelope line with no message after it is a message of its own,
    which becomes a ``not_email`` dead letter, not a line of the next message's. ``>From `` quoting (mboxrd) is
    undone.
    """
    buffer: list[bytes] = []
    start = 0
    offset = 0
    for line in handle:
        if not buffer and not line.strip():  # blank lines before the first envelope belong to no message
            offset += len(line)
            continue
        if buffer and _ENVELOPE.match(line):
            yield f"{name}@{start}", _unquote_from(b"".join(buffer))
            buffer, start = [], offset
        buffer.append(line)
        offset += len(line)
    if buffer:
        yield f"{name}@{start}", _unquote_from(b"".join(buffer))


def _unquote_from(raw: bytes) -> bytes:
    return _QUOTED_FROM.sub(rb"\1", raw)


def is_maildir_message(path: str) -> bool:
    """A Maildir file name ends in its info part, ``:2,<flags>`` (``!2,`` on file systems without colons)."""
    return bool(_MAILDIR_INFO.search(path))


def is_mbox(raw_head: bytes) -> bool:
    """An mbox starts with a ``From `` envelope line (SpamAssassin single messages do too), after any blank lines
    an export left before it."""
    return raw_head.lstrip(b"\r\n").startswith(b"From ")
