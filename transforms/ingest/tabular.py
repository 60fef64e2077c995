"""Review and social-post rows from CSV, JSONL, JSON arrays and Parquet.

Columns are found by name (``ColumnMap`` auto-detection) unless mapped explicitly. Text is
UTF-8 unless a byte-order mark says UTF-16 or UTF-32 (Excel's and PowerShell's exports); a UTF-8
BOM is dropped. CSV bytes are decoded with ``surrogateescape`` (UTF-16 and UTF-32 with :data:`MARK_UNDECODABLE`)
and JSON lines one at a time, so one bad row becomes one dead-letter record instead of failing the whole file.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import math
import re
import warnings
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, BinaryIO

import ijson
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
from dateutil import parser as date_parser
from dateutil.parser import UnknownTimezoneWarning
from openpyxl.utils.datetime import from_excel
from openpyxl.utils.escape import unescape

from transforms.ingest.email import detect_charset
from transforms.records import Document, Failure, excerpt, new_document

TEXT_COLUMNS = ("text", "review_text", "review", "body", "content", "full_text", "tweet", "post", "message",
                "comment", "selftext")
"""Text columns, most telling first. ``selftext`` is a Reddit submission's body (its ``title`` is the subject)."""
ID_COLUMNS = ("id", "review_id", "tweet_id", "post_id", "message_id", "uuid", "id_str")
CREATED_COLUMNS = ("created_at", "created_utc", "created_time", "created_date", "review_submit_date_and_time", "date",
                   "timestamp", "time", "published_at", "review_date", "posted_at", "unix_review_time", "at")
"""Time columns, most telling first. Reddit's ``created_utc`` and Amazon's ``unixReviewTime`` are epoch seconds;
Facebook's Graph API writes ``created_time``, App Store Connect ``createdDate``, Play Console's review reports
``Review Submit Date and Time``;
Amazon's ``reviewTime`` (``09 7, 2013``) is left out, its day and month either way round. The bare ``at`` is the
Google Play scraper's: a time by name, as Rails' ``created_at`` is, and last, so that any other time column wins (a
value that is no time is a note, not a date). The scraper writes the scraping machine's local time without a zone,
read as UTC like every naive time. ``published`` is not here: ActivityStreams' time
(:data:`ACTIVITY_CREATED_COLUMNS`), it is as often a review platform's yes/no publish flag, whose 0 or 1 would read
as a second of 1970."""
AUTHOR_COLUMNS = ("author", "user", "username", "screen_name", "reviewer", "reviewer_id", "reviewer_name",
                  "reviewer_nickname", "handle", "attributed_to", "by")
"""Author columns. Amazon's ``reviewerID`` comes before its ``reviewerName``: the id is the reviewer's across reviews,
the name is often "Amazon Customer", shared by thousands. ``attributedTo`` is ActivityStreams' author, ``by`` Hacker
News' (its API's and BigQuery dataset's items), last, as the least telling name."""
RATING_COLUMNS = ("rating", "stars", "star_rating", "score", "overall")
PRODUCT_COLUMNS = ("product", "product_id", "product_title", "brand", "airline", "asin", "app", "business",
                   "package_name")
_SURROGATE = re.compile("[\ud800-\udfff]")
TITLE_COLUMNS = ("title", "summary", "review_title", "subject", "headline")
CANDIDATES = {"text": TEXT_COLUMNS, "id": ID_COLUMNS, "created_at": CREATED_COLUMNS, "author": AUTHOR_COLUMNS,
              "rating": RATING_COLUMNS, "product": PRODUCT_COLUMNS, "title": TITLE_COLUMNS}
"""Per document field, the column names auto-detection looks for, in order of preference."""
ACTIVITY_CREATED_COLUMNS = ("published", *CREATED_COLUMNS)
"""Time columns of an ActivityStreams object (a row with ``attributedTo``, as every ActivityPub server writes a
post): there ``published`` is the time the post was written."""

#: Column names that mark a table as reviews or as social posts (auto source detection), matched as the candidates are.
REVIEW_HINTS = frozenset({"rating", "stars", "star_rating", "overall", "review", "review_text", "review_id",
                          "product", "product_id", "asin", "reviewer", "helpful"})
SOCIAL_HINTS = frozenset({"tweet", "tweet_id", "post_id", "retweets", "retweet_count", "likes", "like_count",
                          "hashtags", "screen_name", "handle", "mentions", "reply_count", "followers", "airline",
                          "subreddit", "attributed_to"})
_SEPARATORS = re.compile(r"[_\- ]")
_UNIT = re.compile(r"\s*\([^()]*\)\s*\Z")


def _name_key(name: str) -> str:
    """A column name as auto-detection matches it: lower case, without ``_``, ``-`` and spaces, so that Google
    Play's ``reviewId``, a spreadsheet's ``Review ID`` and ``review-id`` are all ``review_id``, and without a unit
    in brackets at its end: ``Date (UTC)`` is ``date``, ``Rating (1-5)`` is ``rating``. Dots stay: a repeated name's
    ``text.1`` is not ``text1``."""
    return _SEPARATORS.sub("", _UNIT.sub("", name).lower())


_KNOWN_NAMES = frozenset(_name_key(name) for names in (*CANDIDATES.values(), REVIEW_HINTS, SOCIAL_HINTS)
                         for name in names)
"""Column names auto-detection knows, as :func:`_name_key` matches them: no title of a report is one."""


@dataclass(frozen=True)
class ColumnMap:
    """Which input column feeds which document field; None means auto-detect from the names above."""

    text: str | None = None
    """Column holding the text to classify."""
    id: str | None = None
    """The record's own id (becomes ``source_id``)."""
    created_at: str | None = None
    """When it was written: ISO-8601 string, ``YYYYMMDD`` day, epoch s/ms/µs/ns, or a timestamp column."""
    author: str | None = None
    """Author or user handle."""
    rating: str | None = None
    """Star rating or score."""
    product: str | None = None
    """Product, brand or account the text is about."""
    title: str | None = None
    """Review title or post subject."""

    def resolve(self, columns: Sequence[str], source: str | None = None) -> ColumnMap:
        """Fill unmapped fields from the first candidate (:data:`CANDIDATES`) that names a column: named as the
        candidate but for case, else but for case and separators (:func:`_name_key`: ``reviewId``, ``createdAt``),
        so that a ``review_id`` beside a ``reviewId`` is the one taken. Of columns that differ only in separators,
        the first in the table. An ActivityStreams object's time is its ``published``. A ``social`` table's
        ``score`` is no rating: a post's score is its votes (Reddit, Hacker News; 1,532 read as 1,532 stars), while
        a review table's ``score`` is its stars (Google Play); ``--rating-column score`` still takes it."""
        lowered = {column.lower(): column for column in columns}
        keyed: dict[str, str] = {}
        for column in columns:
            keyed.setdefault(_name_key(column), column)
        candidates = {**CANDIDATES, "created_at": ACTIVITY_CREATED_COLUMNS} if "attributedto" in keyed else CANDIDATES
        if source == "social":
            candidates = {**candidates, "rating": tuple(name for name in RATING_COLUMNS if name != "score")}
        chosen = {}
        for item in fields(self):
            explicit = getattr(self, item.name)
            if explicit is not None:
                chosen[item.name] = explicit if explicit in columns else None
            else:
                chosen[item.name] = next((lowered.get(c.lower()) or keyed[_name_key(c)]
                                          for c in candidates[item.name] if _name_key(c) in keyed), None)
        return ColumnMap(**chosen)

    def unmatched(self, columns: Sequence[str]) -> list[str]:
        """Notes for the fields mapped to a column the table lacks (a typo in ``--author-column``, a renamed
        export column): they stay empty, as before, but no longer unseen. The text column is left out: without it
        every row is a ``no_text_column`` dead letter that names it."""
        return [f"--{item.name.replace('_', '-')}-column {mapped!r} is not a column of this table: "
                f"{item.name} left empty" for item in fields(self)
                if item.name != "text" and (mapped := getattr(self, item.name)) is not None and mapped not in columns]


def guess_source(columns: Iterable[str], file_name: str) -> str | None:
    """review or social from the column names, then from the file name; None when undecided."""
    names = {_name_key(column) for column in columns}
    review = len(names & {_name_key(h) for h in REVIEW_HINTS})
    social = len(names & {_name_key(h) for h in SOCIAL_HINTS})
    if review != social:
        return "review" if review > social else "social"
    lowered = file_name.lower()
    if any(word in lowered for word in ("tweet", "social", "post", "twitter", "mastodon", "reddit", "outbox")):
        return "social"
    if "review" in lowered:
        return "review"
    return None


_EPOCH = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
"""An epoch number as text, a fraction included (``1732000000.5``, as ``time.time()`` writes)."""
_EPOCH_UNITS = ((10**11, 1), (10**14, 10**3), (10**17, 10**6))
"""Per unit, the largest epoch number read in it (in units per second): seconds, milliseconds, microseconds, and
nanoseconds beyond. Each unit is so read for times up to the year 5138, and all but seconds for times from 1973 on."""
_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)
_COMPACT_DATE = re.compile(r"[0-9]{8}")


def _compact_date(value: Any) -> datetime | None:
    """A ``YYYYMMDD`` day (``20261120``), as text or an integer date key; None for anything else, and for eight
    digits that are no day and no year of 1900-2099 (``86400000``), which stay epoch seconds. Read as seconds, a
    day like this was a time in 1970-73, a span no review or post export holds.

    Eight digits that start as such a year but are no day (``20261399``) raise ``ValueError``: they are a date key
    gone wrong, and read as seconds they gave a time in August 1970 with no note."""
    if not isinstance(value, int | str) or isinstance(value, bool) or not _COMPACT_DATE.fullmatch(str(value).strip()):
        return None
    digits = str(value).strip()
    try:
        return datetime.strptime(digits, "%Y%m%d")
    except ValueError:
        if digits.startswith(("19", "20")):
            raise ValueError(f"{digits} is no day of the year {digits[:4]}") from None
        return None


TIME_TEXT_CHARS = 256
"""A time's text is no longer than this (``Wednesday, 20 November 2026 14:03:00.123456789 Central European Summer Time``
is 80): a longer cell, where a stray quote ran a CSV cell on over many lines, is unparseable without being read,
since the date parser took 8 s for 2,000,000 characters."""


def parse_timestamp(value: Any) -> datetime | None:
    """ISO-8601 text, a ``YYYYMMDD`` day, epoch seconds, milliseconds, microseconds or nanoseconds, or a datetime;
    naive times are taken as UTC.

    A NaN raises like a boolean: it is no time, and not an empty cell either (pandas and pyarrow write a missing
    value as null), so it gets a note instead of passing as a record without a date.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"a boolean is not a time: {value}")
    if isinstance(value, float) and math.isnan(value):
        raise ValueError("NaN is not a time")
    if isinstance(value, str) and len(value) > TIME_TEXT_CHARS:
        raise ValueError(f"{len(value):,} characters are no time")
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif (day := _compact_date(value)) is not None:
        parsed = day
    elif isinstance(value, int | float) or (isinstance(value, str) and _EPOCH.fullmatch(value.strip())):
        parsed = _epoch_time(value)
    else:
        parsed = _parse_date_text(str(value).strip())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _epoch_time(value: int | float | str) -> datetime:
    """An epoch number in the unit its size tells (:data:`_EPOCH_UNITS`), to the microsecond. Decimal, not float:
    a float holds 15 to 17 digits, too few for epoch nanoseconds (``1732000000123456789``)."""
    number = Decimal(str(value).strip())
    per_second = next((scale for largest, scale in _EPOCH_UNITS if abs(number) <= largest), 10**9)
    return _EPOCH_START + timedelta(microseconds=round(number * 1_000_000 / per_second))


_RATING = re.compile(r"(\d+(?:[.,]\d+)?)\s*(?:(?:/|out of)\s*\d+(?:[.,]\d+)?)?\s*(?:stars?)?", re.IGNORECASE)


def parse_rating(value: Any) -> float | None:
    """A number, or the forms review exports write: ``4.0 out of 5 stars``, ``4/5``, ``4,5``, ``★★★★☆``.

    The number is kept on its own scale (4 of 5 stays 4.0); anything else, NaN and infinities included, raises
    ``ValueError``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"a boolean is not a rating: {value}")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer of over 308 digits: it ended its file
            raise ValueError(f"not a rating: an integer of {len(str(abs(value)))} digits") from None
        if not math.isfinite(number):
            raise ValueError(f"not a rating: {value}")
        return number
    text = str(value).strip()
    if text and set(text) <= {"★", "☆"}:
        return float(text.count("★"))
    match = _RATING.fullmatch(text)
    number = float(match.group(1).replace(",", ".")) if match else math.nan
    if not math.isfinite(number):  # no number, or digits past a float's range ("4" * 400 read as infinity)
        raise ValueError(f"not a rating: {text!r}")
    return number


_NO_DATE = datetime(1, 1, 1)


def _parse_date_text(text: str) -> datetime:
    """ISO-8601, else the forms exports write (Twitter's ``Wed Oct 10 20:19:24 +0000 2018``, RFC 2822,
    ``November 29, 2026``, ``2026-11-29 10:00 UTC``) with dateutil.

    Refused rather than guessed: a numeric date whose day and month could be either way round
    (``01/02/2026``), a text without a year, and a zone abbreviation dateutil does not know (``PST``).
    """
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownTimezoneWarning)
        try:
            month_first = date_parser.parse(text, default=_NO_DATE)
            day_first = date_parser.parse(text, default=_NO_DATE, dayfirst=True)
        except UnknownTimezoneWarning as warning:
            raise ValueError(str(warning)) from None
    if month_first != day_first:
        raise ValueError(f"day and month could be either way round in {text!r}")
    if month_first.year == _NO_DATE.year:
        raise ValueError(f"no year in {text!r}")
    return month_first


def activity_post(row: dict[str, Any], ref: str) -> dict[str, Any] | Failure:
    """The post an ActivityStreams activity carries, as the row to read; any other row as it is.

    Mastodon's archive (``outbox.json``, an ``OrderedCollection``) lists activities, not posts, and every one was
    a ``no_text_column`` dead letter. A ``Create`` holds the post in its ``object`` (a ``Note``: HTML ``content``,
    ``id``, ``published``, ``attributedTo``), which is read instead, the activity's ``actor`` and ``published``
    standing in for any the post lacks; the schema has no place for its ``url``, and its ``id`` (the
    ``source_id``) is the post's address. An ``Announce`` is a boost: it repeats a post, mostly another account's,
    which the archive holds only as its address, so it is a ``boost`` dead letter that says so. Only a row with an
    ``object`` is an activity: a table's ``type`` column may well say "Create".
    """
    if "object" not in row:
        return row
    post = row["object"]
    if row.get("type") == "Create" and isinstance(post, dict):
        return {"attributedTo": row.get("actor"), "published": row.get("published"), **post}
    if row.get("type") == "Announce":
        target = post.get("id") if isinstance(post, dict) else post
        return Failure(None, ref, "parse", "boost", f"a boost (ActivityStreams Announce) of {target}: the export holds "
                       "the boosted post's address, not its text",
                       excerpt(json.dumps(row, default=str, ensure_ascii=False)))
    return row


JSON_API_KEYS = frozenset({"type", "id", "attributes", "relationships", "links", "meta"})
"""The members of a JSON:API resource object (jsonapi.org): what an API says of a record is in its ``attributes``."""


def json_api_resource(row: dict[str, Any]) -> dict[str, Any]:
    """A JSON:API resource object as its attributes and its id, as the row to read; any other row as it is. App
    Store Connect's customer reviews (``{"data": [{"type": "customerReviews", "id": ..., "attributes": {"rating":
    5, "title": ..., "body": ..., "reviewerNickname": ..., "createdDate": ...}}]}``), the official source of iOS
    reviews, and every other JSON:API service's records were ``no_text_column`` dead letters."""
    attributes = row.get("attributes")
    if not (isinstance(attributes, dict) and isinstance(row.get("type"), str) and row.keys() <= JSON_API_KEYS):
        return row
    return {**attributes, "id": row["id"]} if "id" in row else dict(attributes)


META_RECORD_KEYS = frozenset({"timestamp", "data", "title", "attachments", "tags"})
"""The keys of a record of Meta's "Download your information" JSON (Facebook posts and comments)."""


def meta_export_post(row: dict[str, Any]) -> dict[str, Any]:
    """The post or comment a record of Meta's "Download your information" JSON holds, as the row to read; any
    other row as it is.

    Facebook's ``your_posts_1.json`` and ``comments.json`` (its ``comments_v2`` array) wrap what was written in a
    ``data`` list: ``{"timestamp": ..., "data": [{"post": "..."}], "title": "Jo updated her status."}`` and
    ``{"timestamp": ..., "data": [{"comment": {"comment": "...", "author": "Jo", ...}}], "title": ...}``. Every
    record was a ``no_text_column`` dead letter. Instagram's (``post_comments_1.json``) label each field instead,
    ``{"string_map_data": {"Comment": {"value": "..."}, "Time": {"timestamp": ...}}}``: read as those fields. The
    generated ``title`` is left out (it is no subject), and a post with no words (a photo alone) is a ``no_text``
    dead letter. Texts come as Meta writes them, UTF-8 bytes read as Latin-1 (``CafÃ©``), which the clean stage
    repairs as any mojibake.
    """
    labeled = row.get("string_map_data")
    if row.keys() <= {"string_map_data", "media_map_data", "title"} and isinstance(labeled, dict):
        return {name: field.get("value", field.get("timestamp")) if isinstance(field, dict) else field
                for name, field in labeled.items()}
    data = row.get("data")
    if not (isinstance(data, list) and data and row.keys() <= META_RECORD_KEYS
            and all(isinstance(item, dict) for item in data)):
        return row
    post: dict[str, Any] = {"timestamp": row.get("timestamp")}
    for item in data:
        post.update(item["comment"] if isinstance(item.get("comment"), dict) else item)
    if "comment" not in post:
        post.setdefault("post", None)
    return post


PLACEHOLDER_TEXTS = frozenset({"[deleted]", "[removed]"})
"""What Reddit (and its dumps) keep as the text of a post or comment its author deleted or a moderator removed."""


def row_to_document(row: Mapping[str, Any], columns: ColumnMap, source: str, input_ref: str) -> Document | Failure:
    """One table row to a document; a missing or non-text text cell, or a bad value, is a failure. A row whose
    text is empty, missing or Reddit's placeholder for a removed post is labeled by its title where it has one (a
    review with only a headline, a Reddit link post), with a note: it was an ``empty_text`` dead letter, and a
    removed post was labeled by the word "removed"."""
    raw = json.dumps(row, default=str, ensure_ascii=False)
    if columns.text is None:
        return Failure(source, input_ref, "parse", "no_text_column",
                       f"no text column among {sorted(row)[:12]}; map one with --text-column", excerpt(raw))
    text = row.get(columns.text)
    notes: list[str] = []
    body = text.strip() if isinstance(text, str) else None
    if (text is None or body == "" or body in PLACEHOLDER_TEXTS) and (
            title := _cell_text(row.get(columns.title)) if columns.title else None) and title.strip():
        described = repr(body) if body else "missing" if text is None else "empty"
        notes.append(f"text column {columns.text!r} is {described}: the title was classified")
        text = title
    elif not isinstance(text, str):
        kind = "missing" if text is None else type(text).__name__
        return Failure(source, input_ref, "parse", "no_text", f"text column {columns.text!r} is {kind}", excerpt(raw))
    elif body in PLACEHOLDER_TEXTS:
        return Failure(source, input_ref, "parse", "no_text", f"text column {columns.text!r} is {body!r}, Reddit's "
                       "placeholder for a deleted or removed post: its text is gone", excerpt(raw))
    try:
        created_at = _created_at(row, columns.created_at, notes) if columns.created_at else None
    except (ValueError, OverflowError, OSError):
        created_at = None
        notes.append(f"unparseable {columns.created_at}: {str(row.get(columns.created_at))[:40]}")
    rating = row.get(columns.rating) if columns.rating else None
    try:
        rating = parse_rating(rating)
    except (TypeError, ValueError):
        notes.append(f"non-numeric rating: {str(rating)[:20]}")
        rating = None
    return new_document(
        source,
        input_ref,
        text,
        source_id=_id_text(row.get(columns.id), notes) if columns.id else None,
        created_at=created_at,
        author=_author_text(row.get(columns.author), notes) if columns.author else None,
        rating=rating,
        product=_cell_text(row.get(columns.product)) if columns.product else None,
        subject=_cell_text(row.get(columns.title)) if columns.title else None,
        ingest_notes=notes,
    )


def _created_at(row: Mapping[str, Any], column: str, notes: list[str]) -> datetime | None:
    """The row's time; in a workbook (:attr:`CsvRow.day_epoch`) a number under :data:`EXCEL_LAST_DAY` is a day
    number, read as Excel reads it, with a note saying so."""
    value, day_epoch = row.get(column), getattr(row, "day_epoch", None)
    if day_epoch is None or not isinstance(value, int | float) or isinstance(value, bool) or not (
            0 < value < EXCEL_LAST_DAY):
        return parse_timestamp(value)
    notes.append(f"{column} {value} read as an Excel day number")
    return from_excel(value, day_epoch).replace(tzinfo=UTC)


def _cell_text(value: Any) -> str | None:
    """A cell (an id, author, product or title) as text; a nested one (``{"a": 1}``) as compact JSON, which other
    tools can read back, not Python's ``repr``. NaN is a gap, not the text "nan": pandas writes a missing value
    as NaN, and so does Python's ``json.dumps`` of such a record."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _id_text(value: Any, notes: list[str]) -> str | None:
    """The record's own id as text. NaN (a gap) and infinity (``1e400``, a number past a float's range) are no id:
    as "nan" and "inf" every such record of a source shared one ``doc_id``; without one a record's id comes from
    its place and text. A float that holds a whole number is written as one: pandas turns an integer id column
    with a gap into floats, and ``123.0`` would not be the ``123`` of the same record read from elsewhere."""
    if isinstance(value, float) and math.isinf(value):
        notes.append(f"id past a number's range ({value}): left out")
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _cell_text(value)


AUTHOR_KEYS = ("screen_name", "username", "acct", "handle", "name")
"""What names the author in a nested author cell (Twitter API v1's ``user``, v2's ``author``, Mastodon's
``account``), in order of preference."""


def _author_text(value: Any, notes: list[str]) -> str | None:
    """The author's handle or name. A nested author object (``{"screen_name": ..., "email": ...}``) gives its
    handle: written whole, its other fields (an email address, a location) reached the output in clear."""
    if not isinstance(value, dict):
        return _cell_text(value)
    for key in AUTHOR_KEYS:
        if isinstance(value.get(key), str) and value[key].strip():
            return value[key]
    notes.append(f"author object without {'/'.join(AUTHOR_KEYS)}: left empty")
    return None


def _has_surrogates(text: str) -> bool:
    """Undecodable bytes kept by ``surrogateescape`` or marked by :data:`MARK_UNDECODABLE`; a regex, because cells
    can be megabytes long."""
    return _SURROGATE.search(text) is not None


def _mark_undecodable(error: UnicodeError) -> tuple[str, int]:
    """Bytes of a UTF-16 or UTF-32 file that decode to no character (a lone surrogate an exporter cut a character
    to, a file cut in the middle of one) as a lone surrogate, so that the row holding them fails alone
    (:func:`_has_surrogates`): strict decoding ended the file there, and a file one byte short lost every row."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return "\udcff", error.end


MARK_UNDECODABLE = "undertone.mark_undecodable"
"""The codec error handler :func:`_mark_undecodable`, registered under this name."""
codecs.register_error(MARK_UNDECODABLE, _mark_undecodable)


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def text_encoding(handle: BinaryIO) -> str:
    """The encoding a byte-order mark names (the codec then skips the mark), else UTF-8; the handle is rewound."""
    start = handle.read(4)
    handle.seek(0)
    return next((encoding for bom, encoding in _BOMS if start.startswith(bom)), "utf-8")


ENCODING_SAMPLE_BYTES = 1 << 20
"""Bytes of a CSV without a byte-order mark read to tell UTF-8 from a legacy code page: the first of its pieces of
this size that holds a byte outside ASCII."""
ENCODING_SCAN_BYTES = 256 << 20
"""How far into a CSV that piece is looked for: a file whose first 256 MiB are ASCII is read as UTF-8."""
WINDOWS_CODE_PAGES = frozenset({"cp1250", "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257",
                                "cp1258", "cp874"})
"""The code pages a CSV may be read in when detection names one: the single-byte ones Windows, and so Excel's plain
"CSV", writes. On a table's few short lines detection is not sure of the rest: three lines of Shift JIS read as
Korean (cp949), one of KOI8-R Russian as Shift JIS. Their rows stay ``invalid_utf8`` dead letters."""
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_NON_ASCII = re.compile("[^\x00-\x7f]")


def csv_encoding(handle: BinaryIO) -> tuple[str, str | None]:
    """The encoding to read a CSV in, with a note for its rows where that is a guess; the handle is rewound.

    Excel's "CSV" (not "CSV UTF-8") and many Windows tools write the system's code page without a mark
    (Windows-1252 in western Europe and the Americas, 1251 for Cyrillic, Shift JIS, GBK): read as UTF-8, every row
    with an accent or a curly quote was an ``invalid_utf8`` dead letter. Such a file's sample has more undecodable
    bytes than UTF-8 sequences, and its code page is detected as a mail part's is (:func:`detect_charset`), among
    :data:`WINDOWS_CODE_PAGES`. A file that is mostly valid UTF-8 where it is not ASCII (a damaged UTF-8 file) stays
    UTF-8, each bad row its own dead letter. The sample is the first piece of the file that is not all ASCII: a
    large export whose first accent came after its first MiB was read as UTF-8, and that row and every later one
    with an accent were dead letters. The code page is detected from the sample's lines that are not ASCII, where
    the language shows: among thousands of ASCII lines a Polish or Russian line was taken for Windows-1252.
    """
    encoding = text_encoding(handle)
    code_page = legacy_code_page(handle, ENCODING_SCAN_BYTES) if encoding == "utf-8" else None
    return (code_page, code_page_note(code_page)) if code_page else (encoding, None)


def legacy_code_page(handle: BinaryIO, scan_bytes: int) -> str | None:
    """The Windows code page a file without a byte-order mark is written in, None for UTF-8 (:func:`csv_encoding`),
    judged from its first :data:`ENCODING_SAMPLE_BYTES` that are not all ASCII within its first ``scan_bytes``;
    the handle is rewound."""
    handle.seek(0)
    sample, scanned = handle.read(ENCODING_SAMPLE_BYTES), 0
    while sample.isascii() and len(sample) == ENCODING_SAMPLE_BYTES and scanned < scan_bytes:
        # a piece after an all-ASCII one starts at a character: no UTF-8 sequence begins with an ASCII byte
        sample, scanned = handle.read(ENCODING_SAMPLE_BYTES), scanned + len(sample)
    handle.seek(0)
    if sample.isascii():
        return None
    decoded = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(sample)  # not final: a cut sequence
    undecodable = len(_UNDECODABLE.findall(decoded))
    if undecodable == 0 or len(_NON_ASCII.findall(decoded)) - undecodable > undecodable:
        return None
    charset = detect_charset(b"\n".join(line for line in sample.split(b"\n") if not line.isascii()))
    name = codecs.lookup(charset).name if charset else None
    return name if name in WINDOWS_CODE_PAGES else None


def code_page_note(code_page: str) -> str:
    return f"decoded as {code_page}: the file is not UTF-8 and has no byte-order mark"


CSV_FIELD_LIMIT = 256 << 20
"""Characters one CSV cell may hold. The csv module's default (131,072) stopped the file at a long
review; an over-long text is refused later, as one ``text_too_large`` record, and the file read on."""


_SEPARATOR_HINT = re.compile(r"sep=(.)\r?\n?")
"""Excel's first line ``sep=;`` naming the delimiter (its exports for locales whose decimal mark is a comma)."""


_FIELD_OPENING = re.compile(r"([^\w\n\"'])( ?)([\"'])")
"""A quoted cell's start after a delimiter, as the first and third of :class:`csv.Sniffer`'s quote patterns read
it (the delimiter: any character but a word character, a line break or a quote)."""
_LINE_OPENING = re.compile(r"(?:^|\n)([\"'])", re.MULTILINE)
"""A quoted cell's start at a line's start, as the second and fourth patterns read it."""


class LinearSniffer(csv.Sniffer):
    """:class:`csv.Sniffer`, its quote guess made in linear time. Each of its patterns reads a quoted cell with a
    lazy ``.*?`` from every opening quote to its closing one, so openings without one read the rest of the sample
    again each (64 KiB of ``,"a``: 19 s), and its doubled-quote pattern backtracks in the fourth power of a run of
    quotes and spaces at a line's start (500 ``" `` pairs: 228 s): one such cell in a file's first 64 KiB hung the
    run. Here each opening finds its closing by a search among the closings listed once; the quote character,
    delimiter and ``skipinitialspace`` are the standard library's. Doubled quotes are not guessed: :func:`read_csv`
    reads ``""`` in a quoted cell as an escaped quote whatever the sample shows."""

    def _guess_quote_and_delimiter(self, data: str, delimiters: str | None) -> tuple[str, bool, str | None, int]:
        closings = _Closings(data)
        matches: list[tuple[str, str | None, str | None]] = []
        for opening, closing in ((_FIELD_OPENING, "delimiter"), (_LINE_OPENING, "any delimiter"),
                                 (_FIELD_OPENING, "line end"), (_LINE_OPENING, "line end")):
            matches = list(_quoted_cells(data, opening, closing, closings))
            if matches:
                break
        if not matches:
            return "", False, None, 0
        quotes: dict[str, int] = {}
        delims: dict[str, int] = {}
        spaces = 0
        for quote, delim, space in matches:
            quotes[quote] = quotes.get(quote, 0) + 1
            if delim is None:
                continue
            if delimiters is None or delim in delimiters:
                delims[delim] = delims.get(delim, 0) + 1
            if space:
                spaces += 1
        quotechar = max(quotes, key=quotes.__getitem__)
        if not delims:
            return quotechar, True, "", 0
        delim = max(delims, key=delims.__getitem__)
        return quotechar, True, "" if delim == "\n" else delim, delims[delim] == spaces


class _Closings:
    """Where quoted cells can close in ``data``, listed once per kind and quote (and delimiter)."""

    def __init__(self, data: str) -> None:
        self.data = data
        self.listed: dict[tuple[str, ...], list[int]] = {}

    def first(self, kind: str, quote: str, delim: str, start: int) -> int | None:
        """The first closing quote at or after ``start``: followed by ``delim`` (``delimiter``), by any delimiter
        character (``any delimiter``) or by a line's end (``line end``)."""
        key = (kind, quote, delim if kind == "delimiter" else "")
        if key not in self.listed:
            follow = {"delimiter": re.escape(delim), "any delimiter": r"[^\w\n\"']", "line end": r"\n|\Z"}[kind]
            self.listed[key] = [match.start() for match in re.finditer(f"{re.escape(quote)}(?={follow})", self.data)]
        at = self.listed[key]
        index = bisect_left(at, start)
        return at[index] if index < len(at) else None


def _quoted_cells(data: str, opening: re.Pattern[str], closing: str, closings: _Closings
                  ) -> Iterator[tuple[str, str | None, str | None]]:
    """``(quote, delimiter, space)`` of each quoted cell, as ``findall`` of the pattern ``opening`` and ``closing``
    stand for finds them (``None`` where that pattern has no such group)."""
    position = 0
    while found := opening.search(data, position):
        if opening is _FIELD_OPENING:
            delim, space, quote = found.groups()
        else:
            (quote,), delim, space = found.groups(), None, None
        close = closings.first(closing, quote, delim or "", found.end())
        if close is None:
            position = found.start() + 1
            continue
        if closing == "line end":
            position = close + 1
        elif closing == "delimiter":
            position = close + 2
        else:
            delim = data[close + 1]
            space = " " if data[close + 2:close + 3] == " " else ""
            position = close + 2 + len(space)
        yield quote, delim, space


class NotedRow(dict[str, Any]):
    """A record with what its document notes for the whole file."""

    notes: tuple[str, ...] = ()
    """The code page the file was decoded in, a sheet's title rows."""


class CsvRow(NotedRow):
    """A CSV row holding only the cells its line has; ``header`` names every column, and a column its line lacks
    reads as None, in ``row[column]``, ``row.get`` and ``in`` alike. ``csv.DictReader`` put a None into every short
    row for each missing column: 20,000 two-cell rows under a 20,000-column header (a 300 KB file) took minutes."""

    header: tuple[str, ...] = ()
    columns: frozenset[str] = frozenset()
    sheet: str | None = None
    """The worksheet of a workbook's row: each sheet is a table of its own, reviews or posts."""
    day_epoch: datetime | None = None
    """A workbook's date system (Excel's day 0): a number in its time column counts days from it."""

    def __missing__(self, key: str) -> None:
        if key in self.columns:
            return None
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self.columns


class _CsvRowReader(csv.DictReader):
    """``csv.DictReader`` giving :class:`CsvRow` rows: its own ``__next__`` but for filling short rows. Set
    ``fieldnames`` through :meth:`name_columns`."""

    header: tuple[str, ...] = ()
    columns: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()

    def name_columns(self, names: list[str]) -> None:
        self.fieldnames = names
        self.header, self.columns = tuple(names), frozenset(names)

    def __next__(self) -> CsvRow:
        if self.line_num == 0:
            self.fieldnames  # noqa: B018 - read for its side effect, as DictReader does
        cells = next(self.reader)
        self.line_num = self.reader.line_num
        while cells == []:
            cells = next(self.reader)
        row = CsvRow(zip(self.header, cells, strict=False))  # a short row holds only its cells
        row.header, row.columns, row.notes = self.header, self.columns, self.notes
        if len(cells) > len(self.header):
            row[self.restkey] = cells[len(self.header):]
        return row


def read_csv(handle: BinaryIO, name: str, text_column: str | None = None
             ) -> Iterator[tuple[str, dict[str, Any] | Failure]]:
    """(input_ref, row) pairs; the dialect is sniffed, the first line is the header, unless lines above it are a
    title (:func:`_header_at`, told by ``text_column`` or auto-detection). An Excel ``sep=`` line before the header
    names the delimiter and is skipped: read as the header, it made every row a dead letter."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    encoding, guessed = csv_encoding(handle)
    errors = "surrogateescape" if encoding.startswith("utf-8") else MARK_UNDECODABLE
    text = io.TextIOWrapper(handle, encoding=encoding, errors=errors, newline="")
    hint = _SEPARATOR_HINT.fullmatch(text.readline())
    start = text.tell() if hint else 0
    text.seek(start)
    sample = text.read(64 * 1024)
    text.seek(start)
    delimiters = hint.group(1) if hint else ",;\t|"
    options = {"delimiter": delimiters} if hint else {}
    dialect, title_lines, title = _csv_layout(sample, delimiters, options, text_column)
    for _ in range(title_lines):
        text.readline()
    source = _LineSource(text)
    reader = _CsvRowReader(source, dialect=dialect, **options)
    if reader.fieldnames:
        reader.name_columns(distinct_names(reader.fieldnames))
    reader.notes = tuple(note for note in (guessed, title) if note)
    hint_lines = (1 if hint else 0) + title_lines  # the reader counts lines from the header; refs name the file's
    line = 1 + hint_lines
    delimiter = reader.reader.dialect.delimiter
    if any(("\n" in column or "\r" in column) and (source.ended or delimiter in column) for column in reader.header):
        # A quote in the header that closes only lines later, or never: those lines, rows of the file, were read as
        # one header cell; the rows after them, if any, are read as usual.
        ref, swallowed = f"{name}:{line}", reader.line_num - 1
        lines = "the next line was" if swallowed == 1 else f"the next {swallowed:,} lines were"
        yield ref, Failure(None, ref, "parse", "unclosed_quote", "a quoted cell of the header does not close on its "
                           f"line: {lines} read into the header, not as rows",
                           excerpt(json.dumps(reader.header, ensure_ascii=False)))
    try:
        for row in reader:
            line = reader.line_num + hint_lines
            if None in row:
                extra = row.pop(None)
                cells = json.dumps([*row.values(), *extra], ensure_ascii=False)  # the whole row, not its extra cells
                yield f"{name}:{line}", Failure(None, f"{name}:{line}", "parse", "csv_extra_cells",
                                                f"row has {len(extra)} more cells than the header", excerpt(cells))
                continue
            ref = f"{name}:{line}"
            if source.ended:
                yield ref, Failure(None, ref, "parse", "unclosed_quote", "the file ends inside this row's quoted "
                                   "cell: its closing quote is missing (every line after it was read into the cell), "
                                   "or the file is cut short", excerpt(json.dumps(row, ensure_ascii=False)))
                continue
            if any(isinstance(cell, str) and _has_surrogates(cell) for cell in row.values()):
                yield ref, Failure(None, ref, "read", "invalid_utf8",
                                   f"row is not valid {encoding.removesuffix('-sig').upper()}",
                                   excerpt(json.dumps(row, ensure_ascii=False)))
                continue
            yield ref, row
    except csv.Error as error:
        yield f"{name}:{line + 1}", Failure(None, f"{name}:{line + 1}", "parse", "invalid_csv", str(error))


def _sniff(sample: str, delimiters: str) -> type[csv.Dialect]:
    """The sample's dialect (``csv.Error`` where no delimiter holds through it). The sniffer says doublequote=False
    when its sample has no "" in a quoted cell; applied to the rest of the file, that corrupted every later ""
    (RFC 4180's escaped quote), which is what a quote in a quoted cell is unless the file has an escape character."""
    dialect = LinearSniffer().sniff(sample, delimiters=delimiters)
    dialect.doublequote = dialect.escapechar is None or dialect.doublequote
    return dialect


def _csv_layout(sample: str, delimiters: str, options: Mapping[str, str], text_column: str | None
                ) -> tuple[type[csv.Dialect] | csv.Dialect, int, str]:
    """The file's dialect, how many lines open it above its header (:func:`_header_at`: a report's title and
    export date, which Excel saves as ``Customer reviews - November 2026,,,``), and the note that says what they
    held. A title line with fewer delimiters than the table (none, where no tool padded it) can mislead the
    sniffer, which then gave up and a semicolon table was read as one comma column: where the first line may be a
    title and no header shows under it, the dialect is sniffed again from each of the next lines."""
    try:
        dialect: type[csv.Dialect] | csv.Dialect = _sniff(sample, delimiters)
    except csv.Error:
        dialect = csv.excel
    rows, lines_before = _first_rows(sample, dialect, options)
    at = _header_at(rows, text_column)
    if not at and rows and _is_title(rows[0][1], text_column):
        lines = io.StringIO(sample, newline="").readlines()
        for skipped in range(1, min(PREAMBLE_ROWS, len(lines) - 1) + 1):
            if not lines[skipped].strip():
                continue
            try:
                table = _sniff("".join(lines[skipped:]), delimiters)
            except csv.Error:
                continue
            rows, lines_before = _first_rows(sample, table, options)
            if at := _header_at(rows, text_column):
                dialect = table
                break
    return (dialect, lines_before[at], _title_note("the file", rows[:at])) if at else (dialect, 0, "")


def _first_rows(sample: str, dialect: type[csv.Dialect] | csv.Dialect, options: Mapping[str, str]
                ) -> tuple[list[tuple[int, list[Any]]], list[int]]:
    """The sample's first rows that hold something (enough for :func:`_header_at`), and the lines before each."""
    rows: list[tuple[int, list[Any]]] = []
    lines_before: list[int] = []
    reader = csv.reader(io.StringIO(sample, newline=""), dialect, **options)
    try:
        while len(rows) <= PREAMBLE_ROWS + 1:
            before = reader.line_num
            cells = next(reader)
            if _filled(cells):
                rows.append((reader.line_num, cells))
                lines_before.append(before)
    except (csv.Error, StopIteration):
        pass
    return rows, lines_before


class _LineSource:
    """A text's lines for the csv reader, noting when they run out. The reader ends a row at a line break outside
    quotes; a row it gives after the lines ran out was ended by the end of the file, inside a quoted cell, which
    the csv module (not strict) closes without a word."""

    def __init__(self, text: Iterable[str]) -> None:
        self.lines = iter(text)
        self.ended = False

    def __iter__(self) -> Iterator[str]:
        yield from self.lines
        self.ended = True


def distinct_names(names: Sequence[str]) -> list[str]:
    """A header's names with repeats numbered as pandas' ``read_csv`` numbers them (``text``, ``text.1``): the csv
    module keeps the last of two ``text`` columns without a word, and the first is the one a reader of the file sees
    first. A number whose name the header already holds (a real ``text.1`` column) is skipped, as pandas skips it:
    the repeat and that column both took ``text.1``, and the csv module kept one of them."""
    taken = set(names)
    counts: Counter[str] = Counter()
    distinct = []
    for name in names:
        count, candidate = counts[name], name
        while count:
            counts[name] = count + 1
            candidate = f"{name}.{count}"
            count = count + 1 if candidate in taken else counts[candidate]
        taken.add(candidate)
        distinct.append(candidate)
        counts[candidate] = count + 1
    return distinct


def read_jsonl(handle: BinaryIO, name: str) -> Iterator[tuple[str, dict[str, Any] | Failure]]:
    """One record per line. A file whose first line is a lone ``{`` or ``[`` is pretty-printed JSON, which no
    JSON line is: objects one after another (``jq '.[]'``) or an array, read as such (:func:`read_json_sequence`,
    :func:`read_json_array`; line by line they were a dead letter per line, 12 for 3 records). Lines may end in a
    bare CR (classic Mac OS exports), as CSV rows may: the file was one ``invalid_json`` line. A file in a Windows
    code page (Python on Windows writes one with ``open(path, "w")`` and ``ensure_ascii=False``) is read in it, with
    a note, when its first MiB tells it (:func:`legacy_code_page`): every line with an accent was a dead letter."""
    encoding = text_encoding(handle)
    code_page = legacy_code_page(handle, 0) if encoding == "utf-8" else None
    encoding = code_page or encoding
    if encoding == "utf-8-sig":
        handle.read(len(codecs.BOM_UTF8))
    start = handle.tell()
    head = handle.read(1 << 16)
    handle.seek(start)
    opening = _LINE_END.split(head.lstrip(), maxsplit=1)[0].strip()
    if (encoding.startswith("utf-8") or code_page) and opening in (b"{", b"["):
        yield from (read_json_sequence if opening == b"{" else read_json_array)(handle, name)
        return
    lines: Iterable[bytes | str] = handle
    cr_only = b"\r" in head and b"\n" not in head
    if not encoding.startswith("utf-8"):  # an illegal UTF-16 code unit fails its line alone; a CR splits a line too
        # a code page's lines end as UTF-8 ones do: at a line feed, or a CR where the file has no line feed
        lines = io.TextIOWrapper(handle, encoding, errors=MARK_UNDECODABLE,
                                 newline="\n" if code_page and not cr_only else None)
    elif cr_only:
        lines = _cr_lines(handle)
    for number, raw in enumerate(lines, start=1):
        ref = f"{name}:{number}"
        if not (raw.strip(ASCII_SPACE) if isinstance(raw, str) else raw.strip()):  # U+001C is no blank line
            continue
        if isinstance(raw, str) and _has_surrogates(raw):
            yield ref, Failure(None, ref, "read", "invalid_utf8", f"line is not valid {encoding.upper()}",
                               excerpt(raw))
            continue
        try:
            row = json.loads(raw if isinstance(raw, str) else raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            yield ref, Failure(None, ref, "read", "invalid_utf8", f"line is not valid UTF-8: {error}", excerpt(raw))
            continue
        except json.JSONDecodeError as error:
            yield ref, Failure(None, ref, "parse", "invalid_json", f"invalid JSON: {error}", excerpt(raw))
            continue
        except ValueError as error:  # a number Python will not read: "Exceeds the limit (4300 digits) ..."
            yield ref, Failure(None, ref, "parse", "invalid_json", f"a number too long to read: {error}",
                               excerpt(raw))
            continue
        except RecursionError:
            yield ref, Failure(None, ref, "parse", "invalid_json", "JSON nested too deeply to read", excerpt(raw))
            continue
        if not isinstance(row, dict):
            yield ref, Failure(None, ref, "parse", "not_an_object", f"JSON line is a {type(row).__name__}",
                               excerpt(raw))
            continue
        yield ref, _noted(row, code_page)


def _noted(row: dict[str, Any], code_page: str | None) -> dict[str, Any]:
    """``row``, noting the code page its file was decoded in, if any."""
    if not code_page:
        return row
    noted = NotedRow(row)
    noted.notes = (code_page_note(code_page),)
    return noted


_LINE_END = re.compile(rb"\r\n|\r|\n")
ASCII_SPACE = " \t\n\r\x0b\x0c"
"""What ``bytes.strip`` strips: a decoded line is blank as its bytes are (``str.strip`` strips U+001C-U+001F too)."""


def _cr_lines(handle: BinaryIO, chunk_bytes: int = 1 << 16) -> Iterator[bytes]:
    """The lines of a file whose lines end in a bare CR, a chunk in memory at a time."""
    rest = b""
    while chunk := handle.read(chunk_bytes):
        *lines, rest = (rest + chunk).split(b"\r")
        yield from lines
    if rest:
        yield rest


class _Utf8Reader:
    """A UTF-16, UTF-32 or BOM-led UTF-8 file as plain UTF-8 bytes, the input ijson reads (a text reader is
    deprecated there); decoded a chunk at a time."""

    def __init__(self, handle: BinaryIO, encoding: str) -> None:
        self.handle = handle
        self.decoder = codecs.getincrementaldecoder(encoding)()

    def read(self, size: int = 1 << 16) -> bytes:
        if size == 0:  # ijson asks for nothing to learn whether a reader gives bytes
            return b""
        while True:
            data = self.handle.read(size if size > 0 else 1 << 16)
            text = self.decoder.decode(data, final=not data)
            if text or not data:  # an empty answer is the end of the file, never a half character
                return text.encode("utf-8")


def _json_encoding(handle: BinaryIO) -> str:
    """A JSON file's encoding, told as ``json.loads`` tells it (from the NUL bytes of the first four, or a
    byte-order mark), or a Windows code page its first MiB tells (:func:`legacy_code_page`); the handle is rewound."""
    handle.seek(0)
    encoding = json.detect_encoding(handle.read(4))
    handle.seek(0)
    return (legacy_code_page(handle, 0) or encoding) if encoding == "utf-8" else encoding


def _json_bytes(handle: BinaryIO, encoding: str) -> BinaryIO | _Utf8Reader:
    """``handle`` from its start as UTF-8 bytes, read in ``encoding`` (:func:`_json_encoding`)."""
    handle.seek(0)
    return handle if encoding == "utf-8" else _Utf8Reader(handle, encoding)


_NON_FINITE = {b"NaN": math.nan, b"Infinity": math.inf, b"-Infinity": -math.inf}
#: Outside a string: whole strings and all that is no word, up to a bare word (true, null, NaN, -Infinity), a string
#: the chunk cuts, or the chunk's end.
_SKIP = re.compile(rb'(?:[^"A-Za-z-]++|-(?![A-Za-z])|"(?:[^"\\]++|\\.)*+")*+', re.DOTALL)
_WORD = re.compile(rb"-?[A-Za-z]+")
_STRING_BODY = re.compile(rb'(?:[^"\\]++|\\.)*+', re.DOTALL)
_WORD_TAIL = re.compile(rb"[A-Za-z-]{1,9}\Z")  # may be the start of a word the next read ends (-Infinity: 9 bytes)


class _NonFiniteReader:
    """JSON bytes with the bare ``NaN``, ``Infinity`` and ``-Infinity`` Python's ``json.dumps`` writes, which ijson
    refuses (every record from the first one on was lost in one dead letter), written as ``null``; ``restore`` turns
    those nulls' events back into the floats, so the array reads as ``json.loads`` reads it, a record at a time.

    A replacement is known by its place among the document's nulls, so neither a real null nor a string saying NaN
    is ever taken for one.
    """

    def __init__(self, source: BinaryIO | _Utf8Reader) -> None:
        self.source = source
        self.held = b""  # the end of the last read, when it may be the start of a word the next read ends
        self.in_string = False
        self.escaped = False  # a string's backslash ended the last chunk
        self.nulls = 0  # nulls written so far, replacements among them
        self.floats: dict[int, float] = {}  # by its place among the nulls, each replacement not yet restored

    def read(self, size: int = 1 << 16) -> bytes:
        if size == 0:  # ijson asks for nothing to learn whether a reader gives bytes
            return b""
        while True:
            data = self.source.read(size if size > 0 else 1 << 16)
            chunk, cut = self.held + data, len(self.held) + len(data)
            if data and (tail := _WORD_TAIL.search(chunk, max(0, cut - 9))):
                cut = tail.start()
            self.held = chunk[cut:]
            if cut or not data:  # an empty answer is the end of the file, never a word cut in two
                return self._rewritten(chunk[:cut])

    def _rewritten(self, chunk: bytes) -> bytes:
        """``chunk`` with its bare non-finite numbers as nulls; strings, cut by the chunk or not, are left alone."""
        parts: list[bytes] = []
        start = pos = 0
        while pos < len(chunk):
            if self.in_string:
                if self.escaped:
                    pos, self.escaped = pos + 1, False
                    continue
                pos = _STRING_BODY.match(chunk, pos).end()
                if pos < len(chunk):  # at its closing quote, or at a backslash that ends the chunk
                    self.escaped = self.in_string = chunk[pos] == ord("\\")
                    pos += 1
                continue
            pos = _SKIP.match(chunk, pos).end()
            if pos == len(chunk):
                break
            if chunk[pos] == ord('"'):  # a string the chunk cuts
                self.in_string, pos = True, pos + 1
                continue
            word = _WORD.match(chunk, pos)
            pos, text = word.end(), word.group()
            if text == b"null":
                self.nulls += 1
            elif text in _NON_FINITE:
                self.floats[self.nulls] = _NON_FINITE[text]
                self.nulls += 1
                parts += (chunk[start:word.start()], b"null")
                start = pos
        parts.append(chunk[start:])
        return b"".join(parts)

    def restore(self, events: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        """ijson's events of what this reader gave, each replacement's null back as its float."""
        nulls = 0
        for event, value in events:
            if event == "null":
                if nulls in self.floats:
                    event, value = "number", self.floats.pop(nulls)
                nulls += 1
            yield event, value


def _json_events(handle: BinaryIO, encoding: str, parser: Any = ijson, sequence: bool = False
                 ) -> Iterator[tuple[str, Any]]:
    """ijson's events of ``handle``'s document (of its documents one after another, with ``sequence``) in
    ``encoding``, a bare NaN or infinity among them as its float; ``parser`` an ijson backend, its fastest by
    default."""
    reader = _NonFiniteReader(_json_bytes(handle, encoding))
    return reader.restore(parser.basic_parse(reader, use_float=True, multiple_values=sequence))


class _WideInteger(Exception):
    """ijson's C parser met an integer wider than 64 bits after ``read`` records (its "integer overflow")."""

    def __init__(self, read: int, sequence: bool) -> None:
        super().__init__(read)
        self.read = read
        self.sequence = sequence


_OPENS = ("start_map", "start_array")
_CLOSES = ("end_map", "end_array")


def _to_first_array(events: Iterator[tuple[str, Any]]) -> bool:
    """Reads an object's events up to the start of the first array among its values: True there, False when the
    object holds none (it is then read to its end). A JSON-LD ``@context`` is never the records: an ActivityPub
    collection (a Mastodon or Pleroma archive's ``outbox.json``) may open with a list of vocabularies, and its
    ``orderedItems`` were then never read."""
    depth, key = 1, None
    for event, value in events:
        if depth == 1 and event == "map_key":
            key = value
        elif depth == 1 and event == "start_array" and key != "@context":
            return True
        depth += (event in _OPENS) - (event in _CLOSES)
    return False


JSON_DEPTH_LIMIT = 512
"""Levels of nesting a JSON array's record may hold. ijson reads any depth, but a record is written back as JSON
(its excerpt, a nested cell's text) by recursion, which a record 10,000 levels deep overflowed, ending the file at
that record; ``json.loads`` refuses a JSON line that deep alike."""
_TOO_DEEP = object()
"""Stands for a record nested deeper than :data:`JSON_DEPTH_LIMIT`, which is not built."""


def _array_items(events: Iterator[tuple[str, Any]]) -> Iterator[Any]:
    """The values of the array whose start was just read, each built by ijson's ``ObjectBuilder`` and yielded
    as its last event is read, so memory holds one at a time; one nested too deep is :data:`_TOO_DEEP`."""
    depth, builder = 0, ijson.ObjectBuilder()
    for event, value in events:
        if depth == 0 and event == "end_array":
            return
        if builder is not None:
            builder.event(event, value)
        depth += (event in _OPENS) - (event in _CLOSES)
        if depth > JSON_DEPTH_LIMIT:
            builder = None
        if depth == 0:
            yield _TOO_DEEP if builder is None else builder.value
            builder = ijson.ObjectBuilder()


def read_json_array(handle: BinaryIO, name: str) -> Iterator[tuple[str, dict[str, Any] | Failure]]:
    """The records of a JSON array, or of the first array an object holds (``{"meta": {...}, "data": [...]}``),
    streamed from ijson's events: memory holds one record, whatever the file's size (``json.loads`` held the file
    and every record it parsed, several times the file). An object without an array is one record. A document
    that breaks keeps the records before the break. A bare ``NaN`` or infinity, as Python's ``json.dumps`` writes
    one, is read as the float, as in JSON lines (``_NonFiniteReader``).

    The array is found by its place, not by an ijson prefix: ijson joins a path's keys with dots, so the prefix
    of a ``"data.items"`` array also matched the items of ``{"data": {"items": [...]}}``, and that of an array
    under the key ``""`` matched nothing, its records gone without a word.

    ijson's C parser holds integers of 64 bits (a 20-digit id broke the file, and every record from it on was
    lost); from the record that holds a wider one, the file is read again with ijson's Python parser, slower, which
    holds any integer Python reads.

    Objects one after another (``jq '.[]'`` writes them so, pretty-printed) are each a record
    (:func:`read_json_sequence`) when the first holds no array.
    """
    yield from _records_of_json(handle, name, sequence=False)


def read_json_sequence(handle: BinaryIO, name: str) -> Iterator[tuple[str, dict[str, Any] | Failure]]:
    """The records of JSON documents one after another, each a record: objects pretty-printed over many lines, as
    ``jq '.[]'`` writes them, which read as JSON Lines were a dead letter per line (12 for 3 records)."""
    yield from _records_of_json(handle, name, sequence=True)


def _records_of_json(handle: BinaryIO, name: str, sequence: bool) -> Iterator[tuple[str, dict[str, Any] | Failure]]:
    try:
        yield from _array_records(handle, name, ijson, sequence=sequence)
    except _WideInteger as wide:
        yield from _array_records(handle, name, ijson.get_backend("python"), skip=wide.read, sequence=wide.sequence)


def _array_records(handle: BinaryIO, name: str, parser: Any, skip: int = 0, sequence: bool = False
                   ) -> Iterator[tuple[str, dict[str, Any] | Failure]]:
    """:func:`read_json_array` (:func:`read_json_sequence` with ``sequence``) with the ijson backend ``parser``,
    from record ``skip`` on."""
    read, array_ended = 0, False
    encoding = _json_encoding(handle)
    code_page = encoding if encoding in WINDOWS_CODE_PAGES else None
    try:
        events = _json_events(handle, encoding, parser, sequence)
        if not sequence:
            start = next(events, (None, None))[0]
            if start not in _OPENS:
                yield name, Failure(None, name, "parse", "not_an_array", "JSON file holds no array of records",
                                    excerpt(_head(handle)))
                return
            if start == "start_map":
                ahead = _json_events(handle, encoding, parser, sequence=True)
                if _another_document_follows(_past_first_document(ahead)):
                    yield from _array_records(handle, name, parser, skip, sequence=True)
                    return
                events = _json_events(handle, encoding, parser)  # afresh: the look ahead read the handle on
                next(events)
                if not _to_first_array(events):
                    yield name, next(ijson.items(ijson.parse(_json_events(handle, encoding, parser)), ""))
                    return
        for index, row in enumerate(_array_items(events)):
            ref = f"{name}[{index}]"
            read += 1
            if index < skip:
                continue
            if isinstance(row, dict):
                yield ref, _noted(row, code_page)
            elif row is _TOO_DEEP:
                yield ref, Failure(None, ref, "parse", "invalid_json",
                                   f"record nested more than {JSON_DEPTH_LIMIT} levels deep")
            else:
                yield ref, Failure(None, ref, "parse", "not_an_object", f"array item is a {type(row).__name__}",
                                   excerpt(json.dumps(row, default=str)))
        array_ended = True
        deque(events, maxlen=0)  # the rest of the document, so that a break after the records is reported too
    except (UnicodeDecodeError, ijson.JSONError) as error:
        if parser is ijson and "integer overflow" in str(error):
            raise _WideInteger(read, sequence) from error
        if not read and _blank(handle, encoding):
            return  # an empty export holds no record, as an empty CSV or JSON Lines file holds none
        where = f"after {read} records" if read else "before any record"
        if not array_ended:  # ijson cannot resume past a break: the record it is in, and all after, are unread
            where = (f"{where}, at record {name}[{read}]: neither it nor any record after it could be read, as the "
                     "parser cannot resume past a break")
        yield name, Failure(None, name, "read", "invalid_json", f"file is not a JSON document ({where}): {error}",
                            excerpt(_head(handle)))


def _past_first_document(events: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """``events`` read to the end of their first document, none of it built (a wrapper object holds the whole file):
    whether another follows (:func:`_another_document_follows`) tells objects one after another from one object
    holding the records' array."""
    depth = 0
    for event, _ in events:
        depth += (event in _OPENS) - (event in _CLOSES)
        if depth == 0:
            break
    return events


def _another_document_follows(events: Iterator[tuple[str, Any]]) -> bool:
    """Whether another JSON document follows the one whose events (of a sequence) were read to its end; bytes that
    are none (a wrapper object's trailing garbage) are reported as the document is read."""
    try:
        return next(events, None) is not None
    except ijson.JSONError:
        return False


def _blank(handle: BinaryIO, encoding: str) -> bool:
    """Whether ``handle``'s document is empty or JSON whitespace only (a byte-order mark aside)."""
    reader = _json_bytes(handle, encoding)
    while chunk := reader.read(1 << 16):
        if chunk.strip(b" \t\r\n"):
            return False
    return True


def _head(handle: BinaryIO, size: int = 2048) -> bytes:
    handle.seek(0)
    return handle.read(size)


def read_parquet(handle: BinaryIO, name: str) -> Iterator[tuple[str, dict[str, Any] | Failure]]:
    """The rows a batch at a time, so memory holds one batch whatever the file's size. A batch holding a time or
    date Python cannot hold (beyond the year 9999: a ``timestamp("s")`` of 10**13, a ``date32`` of 2**31 - 1) is
    converted a row at a time instead (:func:`_parquet_row`): one such value made the whole file one
    ``corrupt_file`` record, whatever column it was in. Repeated column names are numbered as a CSV header's are
    (:func:`distinct_names`): a row's dict kept the last of two ``text`` columns, where a CSV's text is its first."""
    parquet = pq.ParquetFile(handle)
    names = distinct_names(parquet.schema_arrow.names)
    index = 0
    for batch in parquet.iter_batches(batch_size=4096):
        batch = batch.rename_columns(names)
        try:
            rows: Iterable[dict[str, Any] | None] = batch.to_pylist()
        except (OverflowError, ValueError):
            rows = (None for _ in range(batch.num_rows))
        for at, row in enumerate(rows):
            ref = f"{name}#row={index}"
            yield ref, _parquet_row(batch, at, ref) if row is None else row
            index += 1


def _parquet_row(batch: pa.RecordBatch, at: int, ref: str) -> dict[str, Any] | Failure:
    """Row ``at`` of ``batch``, a time or date out of Python's range as text that says so (``10000000000000 out of
    range (timestamp[s])``), which a time column notes as unparseable, as it notes any text that is no time; a
    nested value holding one is the row's dead letter."""
    row: dict[str, Any] = {}
    for column, values in zip(batch.schema.names, batch.columns, strict=True):
        cell = values[at]
        try:
            row[column] = cell.as_py()
        except (OverflowError, ValueError) as error:
            if not isinstance(cell, pa.TimestampScalar | pa.Date32Scalar | pa.Date64Scalar):
                return Failure(None, ref, "parse", "unreadable_value", f"column {column!r} holds a value out of "
                               f"Python's range: {type(error).__name__}: {error}",
                               excerpt(json.dumps(row, default=str, ensure_ascii=False)))
            row[column] = f"{cell.value} out of range ({cell.type})"
    return row


PREAMBLE_ROWS = 10
"""Rows a table (a CSV, a sheet) may hold above its header: a report's title, the day it was exported, who by."""


def _filled(cells: Sequence[Any]) -> list[Any]:
    return [cell for cell in cells if cell is not None and not (isinstance(cell, str) and not cell.strip())]


TITLE_CELLS = 3
"""A title row holds at most this many cells (``Period``, ``1 Nov``, ``30 Nov``)."""


def _names_a_text_column(cells: Sequence[Any], text_column: str | None) -> bool:
    names = [str(cell).strip() for cell in _filled(cells)]
    return text_column in names if text_column else ColumnMap().resolve(names).text is not None


def _is_title(cells: Sequence[Any], text_column: str | None) -> bool:
    """A row that may be a title: a few cells, none a column name auto-detection knows or the text column's."""
    filled = _filled(cells)
    return len(filled) <= TITLE_CELLS and not any(
        _name_key(str(cell).strip()) in _KNOWN_NAMES or str(cell).strip() == text_column for cell in filled)


def _header_at(rows: Sequence[tuple[int, list[Any]]], text_column: str | None = None) -> int:
    """Which of a table's first rows is its header: the first, unless the rows above a later one are titles
    (:func:`_is_title`: a report's name, the day it was exported) and that one names the text column
    (``text_column``, or one auto-detection finds) with two or more distinct names, more than any row above
    holds, and is followed by a row. Reports exported from a shop's back office or a survey tool open with such
    rows; read as the header, the title made every review a dead letter."""
    widest_above = 0
    for at, (_, cells) in enumerate(rows[:-1]):
        filled = _filled(cells)
        if (at and len(filled) > max(widest_above, 1) and all(isinstance(cell, str) for cell in filled)
                and len({cell.strip() for cell in filled}) == len(filled) and _names_a_text_column(cells, text_column)):
            return at
        if not _is_title(cells, text_column):
            return 0
        widest_above = max(widest_above, len(filled))
    return 0


EXCEL_LAST_DAY = 2_958_466
"""Excel's day number of 10000-01-01: a number below it in a workbook's time column is a day number (a date cell
that lost its format, or a formula's result), which read as epoch seconds was a time in January 1970."""


def read_xlsx(handle: BinaryIO, name: str, text_column: str | None = None
              ) -> Iterator[tuple[str, dict[str, Any] | Failure]]:
    """The rows of every worksheet of an Excel workbook (``.xlsx``, ``.xlsm``), each sheet a table, streamed a row
    at a time (openpyxl's read-only mode); ``input_ref`` names the sheet and the row as Excel numbers it
    (``reviews.xlsx#Reviews!12``). A sheet's header is its first non-empty row, or the row under a title
    (:func:`_header_at`), which each of its documents notes. Cells hold what Excel last computed (a formula's
    result, not its text); a date cell is Excel's local time, read as UTC like any naive time, and a number in the
    time column a day number of the workbook's date system (:data:`EXCEL_LAST_DAY`). Review exports (app stores'
    consoles, survey tools, a shop's back office) come as workbooks: the file was one ``unknown_format`` dead
    letter asking for CSV. A row with cells right of the header's last name is a ``csv_extra_cells`` dead letter,
    as a CSV's is. A sheet the workbook lists without naming its part, which openpyxl leaves out with only a
    warning, is a ``corrupt_file`` dead letter."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
    for warning in caught:
        if str(warning.message).startswith("File contains an invalid specification"):
            yield name, Failure(None, name, "read", "corrupt_file", "a sheet the workbook lists names no part of the "
                                "file and is left out: its rows, if any, are not read")
    try:
        for sheet in workbook.worksheets:
            sheet.reset_dimensions()  # the size a file states may be wrong (tools write none, or a stale one)
            rows = _non_empty_rows(sheet)
            first = list(itertools.islice(rows, PREAMBLE_ROWS + 2))
            if not first:
                continue
            at = _header_at(first, text_column)
            header = tuple(distinct_names(["" if cell is None else str(cell).strip() for cell in first[at][1]]))
            columns = frozenset(header)
            notes = (_title_note(f"sheet {sheet.title!r}", first[:at]),) if at else ()
            for number, cells in itertools.chain(first[at + 1:], rows):
                ref = f"{name}#{sheet.title}!{number}"
                extra = [cell for cell in cells[len(header):] if cell is not None]
                if extra:
                    yield ref, Failure(None, ref, "parse", "csv_extra_cells",
                                       f"row has {len(extra)} more cells than the header",
                                       excerpt(json.dumps(cells, default=str, ensure_ascii=False)))
                    continue
                row = CsvRow((column, cell) for column, cell in zip(header, cells, strict=False) if cell is not None)
                row.header, row.columns, row.notes = header, columns, notes
                row.sheet, row.day_epoch = sheet.title, workbook.epoch
                yield ref, row
    finally:
        workbook.close()


def _title_note(table: str, rows: Sequence[tuple[int, list[Any]]]) -> str:
    title = " | ".join(str(cell) for _, cells in rows for cell in _filled(cells))
    return f"{table}: {len(rows)} row(s) above the header read as its title, not records: {excerpt(title, 80)}"


def _non_empty_rows(sheet: Any) -> Iterator[tuple[int, list[Any]]]:
    """(Excel's row number, cells) of a sheet's rows that hold something."""
    for number, row_cells in enumerate(sheet.iter_rows(values_only=True), start=1):
        # Excel writes a character XML cannot hold as an escape (a pasted CRLF as "_x000D_\n"), which openpyxl
        # leaves in the text.
        cells = [unescape(cell) if isinstance(cell, str) else cell for cell in row_cells]
        if _filled(cells):
            yield number, cells


X_ARCHIVE_DATA = re.compile(rb"(?:\xef\xbb\xbf)?\s*window\.YTD\.(\w+)\.part[0-9]+\s*=\s*")
"""The start of a data file of X's (Twitter's) account archive: a JavaScript assignment of a JSON array,
``window.YTD.tweets.part0 = [...]``, the group after ``YTD.`` naming what it holds."""
X_ARCHIVE_TWEETS = ("tweets", "tweet")
"""The archive's data that is the account's posts: ``tweets.js`` (``tweet.js`` in archives before 2022)."""


class _From:
    """A file read as if it began at ``start``: reads, seeks and tells relative to it."""

    def __init__(self, handle: BinaryIO, start: int) -> None:
        self.handle, self.start = handle, start
        handle.seek(start)

    def read(self, size: int = -1) -> bytes:
        return self.handle.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.handle.seek(self.start + offset if whence == io.SEEK_SET else offset, whence) - self.start

    def tell(self) -> int:
        return self.handle.tell() - self.start


def read_x_archive(handle: BinaryIO, name: str) -> Iterator[tuple[str, dict[str, Any] | Failure]]:
    """The tweets of X's account archive (``data/tweets.js``; ``tweets-part1.js`` and on past 50 MB): the JSON
    array after its ``window.YTD.tweets.part0 =``, each record's tweet unwrapped from ``{"tweet": {...}}`` (its
    ``full_text``, ``id``, ``created_at``). The whole file was one ``unknown_format`` dead letter."""
    prefix = X_ARCHIVE_DATA.match(handle.read(4096))
    for ref, row in read_json_array(_From(handle, prefix.end() if prefix else 0), name):
        yield ref, row["tweet"] if isinstance(row, dict) and isinstance(row.get("tweet"), dict) else row


TITLED_TABLES = frozenset({"csv", "xlsx"})
"""Readers whose header may sit under a title, told by the run's ``--text-column`` (``text_column=``)."""
TABLE_READERS = {"csv": read_csv, "jsonl": read_jsonl, "json": read_json_array, "parquet": read_parquet,
                 "xlsx": read_xlsx, "x_archive": read_x_archive}
