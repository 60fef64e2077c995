"""Text clean-up shared by ingest, training and inference.

The same functions run when a model is trained and when it labels documents, so the
classifiers always see text normalised the same way.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from pathlib import Path

import ftfy
from inscriptis import RE_STRIP_XML_DECLARATION
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.html_engine import Inscriptis
from inscriptis.html_properties import Display
from inscriptis.model.config import ParserConfig
from inscriptis.model.html_element import HtmlElement
from lxml.etree import ParserError, strip_elements
from lxml.html import HtmlElement as LxmlElement
from lxml.html import HTMLParser, document_fromstring
from py3langid import langid

from transforms.records import Document, Failure, excerpt

WIDE_PUNCTUATION = "（）［］｛｝「」『』【】〔〕〈〉《》、。，．！？：；"
"""Full-width brackets and punctuation (Chinese, Japanese, Korean text): a URL never holds them raw, so one ends a
URL written straight into such text ("（https://example.com/a）今天", where the bracket and the words after it were
taken into the URL)."""
_URL = re.compile(rf"(?<!@)(?:https?://|www\.)(?:[^\s<>\"(){WIDE_PUNCTUATION}]|\([^\s<>\"(){WIDE_PUNCTUATION}]*\))*"
                  rf"(?:[^\s<>\"().,;:!?\]}}'’”{WIDE_PUNCTUATION}]|\([^\s<>\"(){WIDE_PUNCTUATION}]*\))", re.IGNORECASE)
"""A URL with its balanced parentheses (``.../wiki/Python_(programming_language)``), without the sentence punctuation
or the closing bracket of a parenthesis it stands in that usually follow it. After an ``@`` it is a handle or an email
address's domain (``@www.example.com`` read "@http")."""
_HANDLE_LABEL = r"\w+(?:-+\w+)*"
_HANDLE_DOMAIN = rf"{_HANDLE_LABEL}(?:\.{_HANDLE_LABEL})*\.[a-z][a-z0-9-]*(?!\w)"
"""A domain name ending in a lower-case top-level label: "@dril.Great point" is a handle and a sentence typed
without a space, not the domain "dril.Great" (the word was swallowed into "@user")."""
_SERVER_DOMAIN = rf"{_HANDLE_LABEL}(?:\.{_HANDLE_LABEL})+"
"""A fediverse server after a handle's second ``@``: a domain whatever its case."""
_MENTION = re.compile(rf"(?<![\w@])@(?:{_HANDLE_DOMAIN}|\w+)(?:@{_SERVER_DOMAIN})?")
"""A handle of any length: a Bluesky one is a domain name (``@alice.bsky.social``, ``@bob.example.com``), a fediverse
one has its server (``@alice@mastodon.social``). A full stop after it ends the sentence, not the handle; an email
address has no ``@`` at its start."""
_ELEMENTS = (r"a|abbr|b|blockquote|body|br|center|code|dd|del|div|dl|dt|em|font|h[1-6]|hr|html|i|img|ins|li|ol|p|pre"
             r"|s|small|span|strike|strong|sub|sup|table|tbody|td|th|thead|tr|u|ul")
"""The elements that fediverse servers, review exports and mail write; made-up names ("<rant>", "<grin>") are text."""
_ATTRIBUTE = r"""\s+[a-z][\w:.-]*(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'<>`]+))?"""
HTML_OPENING_PATTERN = (rf"<[bh]r\s*/?>|<(?:{_ELEMENTS})(?=\s[^<>]*=)(?:{_ATTRIBUTE})+\s*/?>"
                        r"|<(?P<omissible>p|li)\s*>[\s\S]*?<(?P=omissible)\s*>|(?<=[^\s<>])<p\s*>(?=[^\s<>])")
"""HTML written without closing tags (ASCII only, so that email compiles it as bytes too): a line break or rule
(``<br />``, ``<hr>``), a known element's opening tag with an attribute that has a value (``<p class="review">``,
``<a href="...">``, ``<img src="x.jpg">``), or a paragraph or list item opened twice (``<p>Arrived.<p>Sturdy.``,
``<li>cheap<li>sturdy``: HTML lets their end tags be left out, and exports do), or a paragraph tag between two
words with no space either side (``Tried it.<p>Slow.``: Hacker News separates a comment's paragraphs so). One bare
tag is a writer naming it ("the <b> tag is deprecated", "use <p> for paragraphs", "<U>Wake Up" in a SemEval tweet)
and stays text; markup gives its tags attributes, repeats them or writes them between words."""
_MARKUP = re.compile(rf"</(?:{_ELEMENTS})\s*>|{HTML_OPENING_PATTERN}", re.IGNORECASE)
"""HTML, to be read as text: a known element's closing tag (``</div>``, ``</td>``) or :data:`HTML_OPENING_PATTERN`;
not a text that merely has a ``<`` ("I <3 it", "</3", "List<String>", "a <- b") or a made-up tag
("<rant>why</rant>")."""
_INLINE_HTML = ParserConfig(css={**CSS_PROFILES["strict"], "hr": HtmlElement(display=Display.block)})
"""inscriptis's strict profile: spans are inline, as in a browser. The relaxed default that email uses pads them with
spaces, and Mastodon splits every handle and link into spans (``@<span>bob</span>`` read "@ bob"). A rule is a block
as in a browser: inscriptis joined the words either side of it ("Good<hr>Bad" read "GoodBad")."""
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+")
_INVISIBLE = re.compile(r"[\u00ad\u200b\u2060\ufeff]"
                        r"|(?<![^\x00-\x7f\s])[\u200c\u200d]|[\u200c\u200d](?![^\x00-\x7f\s])")
"""Characters that show nothing and join or separate nothing: the soft hyphen (a line-break hint pasted from web
pages, "avail\\u00adable"), the zero-width space, word joiner and zero-width no-break space (a BOM) anywhere, and a
zero-width (non-)joiner next to ASCII, a space or the text's edge. They sat inside words ("hel\\u200blo" became
"hel lo"); between emoji, Persian or Indic letters a joiner shapes the text and stays."""
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BIDI_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069]")
"""Explicit directional embeddings, overrides and isolates (LRE, RLE, PDF, LRO, RLO; LRI, RLI, FSI, PDI). An
RLO shows the text after it reversed, so a review's "enohp" reads as "phone" on a dashboard while the model
sees the reversed letters ("Trojan Source" spoofing); the Unicode algorithm orders Arabic and Hebrew letters
without them. The implicit marks LRM, RLM and ALM (U+200E, U+200F, U+061C) stay: they only place neutral
characters (punctuation, digits) beside right-to-left words, cannot reverse letters, and Persian and Hebrew
writers type them in ordinary text."""
_FTFY_ASCII_TRIGGERS = re.compile(r"[&\r\x00-\x08\x0b\x0e-\x1f\x7f]")
"""The only ASCII characters any of ftfy's fixes act on: ``&`` (HTML entities), carriage returns (line breaks),
ESC (terminal escapes) and the control characters it removes. Mojibake, ligatures, wide forms and
normalisation all need non-ASCII text."""


def repair_unicode(text: str) -> str:
    """ftfy's repair (mojibake, entities, line breaks, controls) and NFC, curly quotes kept.

    ftfy walks a text line by line through a dozen fixers; ASCII text without a character any of them acts on
    comes back unchanged, so it skips them: 97 % of the texts in ``../shared/data``, where the output is the same
    for all 132,487 and the repair 4.4 times faster. The bench corpus's cleaning took 0.63 s instead of 1.18 s.
    """
    if text.isascii() and not _FTFY_ASCII_TRIGGERS.search(text):
        return text
    return ftfy.fix_text(text, normalization="NFC", uncurl_quotes=False)


def normalise_text(text: str) -> str:
    """Repair mojibake, normalise Unicode (NFC) and collapse whitespace.

    Keeps line breaks (paragraphs matter for emails) but drops control characters, explicit
    bidirectional controls (:data:`_BIDI_CONTROL`) and runs of blank lines.
    """
    return _tidy(_repair(text))


def _repair(text: str) -> str:
    """The text as it reads: mojibake and HTML entities decoded (``&#x202E;`` is an RLO from here on), NFC, one kind
    of line break, no control characters."""
    text = unicodedata.normalize("NFC", repair_unicode(text))
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _tidy(text: str) -> str:
    """A repaired text without bidirectional controls, invisible characters or runs of spaces and blank lines."""
    text = _BIDI_CONTROL.sub("", text)
    text = _INVISIBLE.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def normalise_social(text: str) -> str:
    """Normalise a social post: HTML (a fediverse status) to text, entities decoded, URLs to ``http``, handles to
    ``@user``.

    Hashtags and emoji are kept: they carry sentiment. The placeholders match the usual
    SemEval preprocessing, so the sentiment model sees what it was trained on.
    """
    return normalise_text(_social_to_text(text))


def _markup_to_text(text: str) -> str:
    """A post's or review's HTML as text, entities decoded even beside a ``<`` (ftfy leaves "&amp;" in any text
    with one, so "I <3 it &amp; more" kept it). Control characters go first: the HTML parser turns a NUL into
    U+FFFD, which no later step removes."""
    text = _CONTROL.sub("", text)
    if not _MARKUP.search(text):
        return html.unescape(text)
    tree = html_tree(text)
    return "" if tree is None else tree_text(tree, _INLINE_HTML)


_DEEP_HTML = HTMLParser(huge_tree=True)
"""libxml2's HTML parser with its depth limit raised from 256 nested elements to 2,048: at 256 it stopped and dropped
the rest of the document, so an email or a review in 300 nested ``<font>`` tags read "Start." without the complaint
below it."""


def html_tree(html: str) -> LxmlElement | None:
    """The HTML parsed as inscriptis's ``get_text`` parses it, with :data:`_DEEP_HTML`; None for blank HTML."""
    html = html.strip()
    if not html:
        return None
    if html.startswith("<?xml "):
        html = RE_STRIP_XML_DECLARATION.sub("", html, count=1)
    try:
        return document_fromstring(html, parser=_DEEP_HTML)
    except ParserError:  # lxml reads no document (a lone comment, say): inscriptis reads it as text
        return document_fromstring(f"<pre>{html}</pre>", parser=_DEEP_HTML)


def tree_text(tree: LxmlElement, config: ParserConfig) -> str:
    """The parsed HTML as text (inscriptis); a document nested deeper than inscriptis can recurse (about 1,000
    elements) gives its text without layout."""
    try:
        return Inscriptis(tree, config).get_text()
    except RecursionError:
        strip_elements(tree, "style", "script", "template", with_tail=False)
        return tree.text_content()


def _social_to_text(text: str) -> str:
    """A post's HTML as text, entities decoded, with the URL and handle placeholders."""
    return _MENTION.sub("@user", _URL.sub("http", _markup_to_text(text)))


_TO_TEXT = {"social": _social_to_text, "review": _markup_to_text}
"""How a source's raw text is read before the repair; email bodies arrive as text already (ingest converts
HTML parts)."""


LANGUAGE_CONFIDENCE = 0.2
"""Least probability py3langid must give its language for the document to get one: short texts spread it thinly
("@user lost my bag AGAIN 😡 http #fail" is English at 0.21), guesses sit lower ("Great blender 👍" was Norwegian
at 0.12). On 2,998 English SemEval-2016 tweets of 3+ words, 98.7 % keep "en", 0.2 % fall below; the 1.1 % that
py3langid calls Nigerian Pidgin have no ISO 639-1 code and come back None too."""
_MACRO_LANGUAGES = {"arz": "ar", "ary": "ar", "yue": "zh", "wuu": "zh", "gug": "gn", "uzs": "uz", "sdh": "ku",
                    "kik": "ki"}
"""py3langid's three-letter varieties whose macrolanguage has an ISO 639-1 code; its other three-letter labels
(Nigerian Pidgin, Guadeloupean Creole, Latgalian, ...) have none, and the column holds only ISO 639-1 codes."""


@functools.cache
def _language_identifier() -> langid.LanguageIdentifier:
    """py3langid's shipped model with normalised probabilities (its default identifier gives raw scores only)."""
    return langid.LanguageIdentifier.from_modelpath(Path(langid.MODEL_DIR) / langid.MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> str | None:
    """ISO 639-1 code from py3langid (its model ships in the package, no download); None for fewer than three words,
    below :data:`LANGUAGE_CONFIDENCE`, or for a language without an ISO 639-1 code."""
    sample = text[:2000]
    if len(sample.split()) < 3:
        return None
    language, probability = _language_identifier().classify(sample)
    code = _MACRO_LANGUAGES.get(language, language)
    return code if probability >= LANGUAGE_CONFIDENCE and len(code) == 2 else None


def has_visible_text(text: str) -> bool:
    """Whether any character shows: a text of nothing but format characters (the direction marks that
    :func:`normalise_text` keeps for Persian and Hebrew writers, joiners between emoji) is empty."""
    return any(unicodedata.category(char)[0] not in "ZC" for char in text)


def bidi_controls_note(repaired: dict[str, str | None]) -> str | None:
    """The note for explicit bidirectional controls removed, counted per field (an email's full_text repeats its
    text's), so that spoofing attempts can be found; None when there were none. The fields are counted as
    :func:`_repair` leaves them: an RLO written ``&#8238;`` is one there, not in the raw text."""
    counts = [(name, len(_BIDI_CONTROL.findall(repaired.get(name) or ""))) for name in ("text", "subject", "full_text")]
    found = ", ".join(f"{count} in {name}" for name, count in counts if count)
    return f"bidirectional control characters removed: {found}" if found else None


BINARY_SNIFF_CHARS = 4096
BINARY_CONTROL_SHARE = 0.1
"""A text whose first ``BINARY_SNIFF_CHARS`` characters are more than this share control characters (NUL
included) is binary content read as text; fewer (a stray NUL from a database export, a form feed) are removed
and noted, and the rest of the record is labeled."""


def _why_empty(document: Document) -> str:
    """The dead letter's reason for a document with no text: an email's excerpt is then empty too, so the reason
    says that it had neither subject nor body, and what ingest noted (an encrypted body, say)."""
    reason = "no text left after clean-up"
    if document["source"] == "email" and not (document.get("subject") or "").strip():
        reason += ": no subject and no body text"
    notes = "; ".join(document["ingest_notes"] or [])
    return f"{reason} ({notes})" if notes else reason


def clean_document(document: Document, max_chars: int) -> Document | Failure:
    """Normalise a document's text; empty, oversized or binary text becomes a failure.

    ``max_chars`` guards workers against pathological records (a 20 MB "review"): longer raw
    text is refused with a reason rather than half-processed.
    """
    source, ref = document["source"], document["input_ref"]
    raw = document["text"] or ""
    if len(raw) > max_chars:
        return Failure(source, ref, "clean", "text_too_large",
                       f"text has {len(raw):,} characters, limit is {max_chars:,}", excerpt(raw), document["doc_id"])
    if len(_CONTROL.findall(raw[:BINARY_SNIFF_CHARS])) > BINARY_CONTROL_SHARE * min(len(raw), BINARY_SNIFF_CHARS):
        return Failure(source, ref, "clean", "binary", "text is mostly control characters (binary content)",
                       excerpt(raw), document["doc_id"])
    to_text = _TO_TEXT.get(source)
    repaired = {"text": _repair(to_text(raw) if to_text else raw),
                **{name: _repair(document[name]) if document.get(name) else document.get(name)
                   for name in ("subject", "full_text")}}
    text = _tidy(repaired["text"])
    if not has_visible_text(text):
        return Failure(source, ref, "clean", "empty_text", _why_empty(document), excerpt(raw), document["doc_id"])
    notes = list(document["ingest_notes"] or [])
    if _CONTROL.search(raw):
        notes.append(f"{len(_CONTROL.findall(raw))} control characters removed")
    if not raw.isascii() and ftfy.fix_encoding(raw) != raw:  # ASCII is never mojibake
        notes.append("mojibake or unicode repaired")
    if bidi_note := bidi_controls_note(repaired):
        notes.append(bidi_note)
    return {
        **document,
        "text": text,
        "full_text": _tidy(repaired["full_text"]) if document.get("full_text") else None,
        "subject": _tidy(repaired["subject"]) if document.get("subject") else document.get("subject"),
        "language": detect_language(text),
        "ingest_notes": notes,
    }
