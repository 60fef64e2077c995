"""Text clean-up and the clean stage's refusals."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path

import ftfy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.clean import clean_document, detect_language, normalise_social, normalise_text, repair_unicode
from transforms.ingest.email import body_text
from transforms.records import Failure, new_document


def ftfy_repair(text: str) -> str:
    return ftfy.fix_text(text, normalization="NFC", uncurl_quotes=False)


def test_social_posts_keep_hashtags_and_emoji_but_hide_handles_and_links() -> None:
    text = normalise_social("@Delta worst flight ever &amp; no refund 😡 #neveragain https://t.co/abc123")
    assert text == "@user worst flight ever & no refund 😡 #neveragain http"


def test_mojibake_is_repaired_and_whitespace_collapsed() -> None:
    assert normalise_text("CafÃ©   au lait\r\n\r\n\r\n\r\nnext  line ") == "Café au lait\n\nnext line"


def test_clean_document_refuses_empty_huge_and_binary_text() -> None:
    def outcome(text: str, limit: int = 1000):
        result = clean_document(new_document("review", "f:1", text), limit)
        return result.error_type if isinstance(result, Failure) else result

    assert outcome(" \n\t ") == "empty_text"
    assert outcome("\u200b\u200c\u200d\u2060\u200e") == "empty_text"  # zero-width and direction marks only
    assert outcome("\U0001f468\u200d\U0001f469\u200d\U0001f467")["text"].count("\u200d") == 2  # a family emoji
    assert outcome("x" * 1001) == "text_too_large"
    assert outcome("ok\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f" * 5) == "binary"
    cleaned = outcome("This phone is absolutely wonderful, I love it")
    assert cleaned["language"] == "en" and cleaned["text"].startswith("This phone")
    assert cleaned["ingest_notes"] == []


def test_a_few_stray_control_characters_are_removed_and_noted_not_a_binary_record() -> None:
    """A NUL from a database export or a terminal bell in a review is noise in text, not binary content."""
    review = clean_document(new_document("review", "f:1", "hello\x00 world, great\x07 value for money"), 1000)
    assert not isinstance(review, Failure)
    assert review["text"] == "hello world, great value for money"
    assert review["ingest_notes"] == ["2 control characters removed"]
    # The share is of the first 4,096 characters: one in ten is the most that is still text.
    assert not isinstance(clean_document(new_document("review", "f:2", ("\x00" + "a" * 9) * 20), 1000), Failure)
    assert clean_document(new_document("review", "f:3", ("\x00\x00" + "a" * 8) * 20), 1000).error_type == "binary"


def test_language_detection_is_offline_and_abstains_on_tiny_text() -> None:
    assert detect_language("Das ist ein sehr schönes Hotel mit freundlichem Personal") == "de"
    assert detect_language("ok") is None


def test_language_is_an_iso_639_1_code_or_none_when_unsure() -> None:
    """py3langid labels some texts with three-letter codes the column's contract (ISO 639-1) has no room for, and
    guesses on texts it cannot tell: these come back None; a variety with a macrolanguage code takes it."""
    assert detect_language("Gr8 product, wud buy again") is None  # py3langid: Nigerian Pidgin, 0.38
    assert detect_language("Great blender 👍 love") is None  # Norwegian at 0.12 before
    assert detect_language("@user @user @user") is None
    assert detect_language("Je suis très content de mon achat") == "fr"
    assert detect_language("El paquete nunca llegó y nadie contesta") == "es"
    assert detect_language("佢哋 唔係 噉 講 嘅 ， 我 都 唔知 點算") == "zh"  # py3langid: Cantonese (yue)
    assert detect_language("ده انا مش عارف اعمل ايه النهارده خالص يا جماعة") == "ar"  # py3langid: Egyptian Arabic


def test_social_urls_lose_their_trailing_punctuation_but_not_the_sentence() -> None:
    assert normalise_social("New post (https://t.co/abc123). Read it: www.example.com/a?b=1, thanks!") == \
        "New post (http). Read it: http, thanks!"


def test_social_handles_become_user_but_email_addresses_do_not() -> None:
    assert normalise_social("@alice@mastodon.social and @Bob_99: mail me at carol@example.com") == \
        "@user and @user: mail me at carol@example.com"


def test_social_entities_decoded_and_emoji_sequences_kept() -> None:
    text = normalise_social("family 👨‍👩‍👧 👍🏽 ❤️ &lt;3 &quot;yes&quot; &#39;no&#39; #Café #100DaysOfCode")
    assert text == "family 👨\u200d👩\u200d👧 👍🏽 ❤️ <3 \"yes\" 'no' #Café #100DaysOfCode"


def test_clean_document_normalises_social_posts_and_keeps_the_subject() -> None:
    post = clean_document(new_document("social", "p:1", "@united lost my bag AGAIN 😡 https://t.co/x #fail",
                                       subject="Baggage"), 1000)
    assert post["text"] == "@user lost my bag AGAIN 😡 http #fail"
    assert post["subject"] == "Baggage" and post["language"] == "en"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=300))
def test_repair_unicode_equals_ftfy_on_any_ascii_text(text: str) -> None:
    assert repair_unicode(text) == ftfy_repair(text)


def test_repair_unicode_still_repairs_what_ftfy_repairs_in_ascii_and_beyond() -> None:
    for text in ("fish &amp; chips", "line one\r\nline two\rthree", "\x1b[36mblue\x1b[0m", "bell\x07 here",
                 "CafÃ© au lait", "ﬂubberiﬁc ＬＯＵＤ"):
        assert repair_unicode(text) == ftfy_repair(text) != text


def test_repair_unicode_equals_ftfy_on_real_email_bodies(shared_data: Path) -> None:
    files = sorted((shared_data / "email" / "spamassassin").glob("*/*"))[::6]
    bodies = [body_text(BytesParser(policy=policy.default).parsebytes(path.read_bytes()), []) for path in files]
    assert sum(body.isascii() for body in bodies) > len(bodies) / 2  # the shortcut is exercised, not only ftfy
    assert [repair_unicode(body) for body in bodies] == [ftfy_repair(body) for body in bodies]


def test_an_rlo_spoofed_product_name_is_read_as_stored_and_noted() -> None:
    """An RLO shows "enohp" as "phone" on a dashboard; the model read the reversed letters. Removed, and noted."""
    raw = "Five stars for the \u202eenohp-X\u202c from this seller, fast delivery"
    review = clean_document(new_document("review", "r:1", raw, subject="Best \u202edaolnwod\u202c ever"), 1000)
    assert review["text"] == "Five stars for the enohp-X from this seller, fast delivery"
    assert review["subject"] == "Best daolnwod ever"
    assert review["ingest_notes"] == ["bidirectional control characters removed: 2 in text, 2 in subject"]


def test_arabic_with_embeddings_keeps_its_letters_and_marks() -> None:
    """RLE/PDF around Arabic go; the letters stay, and so do RLM/ALM, which only place punctuation and digits."""
    raw = "\u202bالمنتج ممتاز والتوصيل سريع جدا\u202c \u200f(5/5)\u061c شكرا"
    review = clean_document(new_document("review", "r:2", raw), 1000)
    assert review["text"] == "المنتج ممتاز والتوصيل سريع جدا \u200f(5/5)\u061c شكرا"
    assert review["language"] == "ar"
    assert review["ingest_notes"] == ["bidirectional control characters removed: 2 in text"]


def test_a_tweet_with_isolates_is_cleaned_and_a_text_of_controls_only_is_empty() -> None:
    post = clean_document(new_document("social", "p:1", "Flight \u2067\u05ea\u05dc \u05d0\u05d1\u05d9\u05d1\u2069 "
                                       "to \u2066NYC\u2069 delayed again \u2068@ElAlUSA\u2069 #fail"), 1000)
    assert post["text"] == "Flight \u05ea\u05dc \u05d0\u05d1\u05d9\u05d1 to NYC delayed again @user #fail"
    assert normalise_text("\u202a\u202b\u202d\u202e\u2066\u2067\u2068\u2069\u202c") == ""
    blank = clean_document(new_document("social", "p:2", " \u202e \u2067\u2069 \u202c "), 1000)
    assert isinstance(blank, Failure) and blank.error_type == "empty_text"


MASTODON_STATUS = (
    '<p>Loving the new release! <span class="h-card" translate="no"><a href="https://mastodon.social/@bob" '
    'class="u-url mention">@<span>bob</span></a></span> the changelog is at <a href="https://example.com/blog/2026/'
    'release-notes" target="_blank" rel="nofollow noopener" translate="no"><span class="invisible">https://</span>'
    '<span class="ellipsis">example.com/blog/2026/rel</span><span class="invisible">ease-notes</span></a> '
    '<a href="https://mastodon.social/tags/OpenSource" class="mention hashtag" rel="tag">#<span>OpenSource</span>'
    '</a></p><p>Fixes &amp; speed-ups &lt;3<br />Upgrade today</p>')


def test_a_mastodon_status_in_html_becomes_plain_text_with_its_mention_link_and_hashtag() -> None:
    """Mastodon exports a status's ``content`` as HTML: its tags reached the classifier and the output, and the
    spans it splits handles and links into left "@ bob" and "https:// example.com" in any converter that pads them."""
    post = clean_document(new_document("social", "statuses.json:1", MASTODON_STATUS), 10_000)
    assert post["text"] == "Loving the new release! @user the changelog is at http #OpenSource\n\n" \
        "Fixes & speed-ups <3\nUpgrade today"
    assert post["language"] == "en"


@pytest.mark.parametrize("tweet", [
    "I <3 this phone, battery lasts > 2 days", "price < $20 </3 #fail", "<rant>why</rant> #Monday", "I <3 it",
    "if x<y and y>z then x<z", "exams tomorrow >_<", "<grin> told you so", "<3 <3 <3", "<<< best deal ever",
    "return List<String>, not List<I> #java", "a <- b in R, always", "the <b> tag is deprecated lol",
    "use <p> for paragraphs", "the <b> and <i> tags are not dead", "<U>Wake Up Fox, not going there",
])
def test_plain_posts_with_angle_brackets_are_not_read_as_html(tweet: str) -> None:
    """Only markup of the elements fediverse servers and review sites write makes a text HTML: a heart, a
    comparison, a made-up tag, or a tag named once and bare in running text, is the writer's text."""
    assert normalise_social(tweet) == tweet
    assert clean_document(new_document("review", "reviews.csv:3", tweet), 1000)["text"] == tweet


def test_escaped_markup_in_a_post_is_decoded_but_not_read_as_html() -> None:
    assert normalise_social("use &lt;p&gt; tags, not &lt;div&gt;&lt;/div&gt;") == "use <p> tags, not <div></div>"


@pytest.mark.parametrize(("raw", "text"), [
    ("<p>Arrived quickly.<p>Battery lasts two days.", "Arrived quickly.\n\nBattery lasts two days."),
    ("Pros:<li>cheap<li>sturdy", "Pros:\n* cheap\n* sturdy"),
    ('<p class="review">Great phone, the battery lasts two days', "Great phone, the battery lasts two days"),
    ('<img src="https://cdn.example.com/r/123.jpg" alt="photo">Nice case, fits well', "Nice case, fits well"),
    ('Specs on <a href="https://example.com/p/1">the maker\'s page', "Specs on the maker's page"),
    ("Good screen<hr>Tinny speakers", "Good screen\nTinny speakers"),
    ("Arrived quickly.<p>Battery lasts two days.", "Arrived quickly.\n\nBattery lasts two days."),
])
def test_a_review_in_html_without_closing_tags_becomes_text(raw: str, text: str) -> None:
    """HTML lets a paragraph's and a list item's end tags be left out, and exports do: only a closing tag or a
    ``<br>`` made a text HTML, so these reached the model with their tags in. A rule separates the words either side
    of it (inscriptis read "Good screenTinny speakers")."""
    assert clean_document(new_document("review", "reviews.csv:4", raw), 1000)["text"] == text


@pytest.mark.parametrize("depth", [300, 1200])
def test_a_review_in_html_nested_hundreds_deep_keeps_its_text_after_the_nesting(depth: int) -> None:
    """Unclosed ``<b>`` or ``<font>`` tags nest every later element a level deeper; libxml2 stops at 256 levels by
    default, and the review read "Start." without the complaint after it, with no note."""
    raw = "<p>Start.</p>" + "<b>" * depth + "<p>Broke after a week, want a refund.</p>"
    text = clean_document(new_document("review", "reviews.csv:9", raw), 100_000)["text"]
    assert text.startswith("Start.") and text.endswith("Broke after a week, want a refund.")


def test_a_post_in_html_without_closing_tags_becomes_text_with_placeholders() -> None:
    post = 'Deal of the day <a href="https://shop.example.com/deal" rel="nofollow">@shop.<p>Only today!'
    assert normalise_social(post) == "Deal of the day @user.\n\nOnly today!"


def test_urls_keep_their_balanced_parentheses() -> None:
    """A Wikipedia link was cut at "(" and its tail left behind ("http)"); a closing bracket the URL did not open
    still ends it."""
    assert normalise_social("Read https://en.wikipedia.org/wiki/Python_(programming_language) first") == \
        "Read http first"
    assert normalise_social("(see https://en.wikipedia.org/wiki/Mercury_(planet)), then https://x.org/a_(b)c.") == \
        "(see http), then http."


def test_long_and_fediverse_handles_become_user_whole() -> None:
    """A handle was matched up to 30 characters and the rest left behind ("@user5678")."""
    assert normalise_social("@someone@very-long-instance.example.social thanks @a_really_long_handle_of_a_bot_12345!") \
        == "@user thanks @user!"


def test_zero_width_characters_inside_words_are_removed_not_turned_into_spaces() -> None:
    """A zero-width space split "hel\u200blo" into "hel lo"; word joiners and BOMs stayed inside words. Joiners
    between emoji, in Persian and in Indic words still join."""
    assert normalise_text("hel\u200blo wor\u2060ld \ufeffstart da\u200cta re\u200dport \u200dend") == \
        "hello world start data report end"
    kept = "family 👨\u200d👩\u200d👧 ❤️\u200d🔥 می\u200cخواهم क्\u200dष"
    assert normalise_text(kept) == kept
    post = clean_document(new_document("social", "p:1", "so\u200bcool \U0001f469\u200d\U0001f4bb"), 1000)
    assert post["text"] == "socool \U0001f469\u200d\U0001f4bb"


def test_bluesky_and_custom_domain_handles_become_user_whole() -> None:
    """A Bluesky handle is a domain name: only its first label was replaced ("@user.bsky.social"). Mastodon handles
    stay one "@user", email addresses stay, and a sentence's full stop after a handle is not part of it."""
    post = ("Huge thanks to @alice.bsky.social and @jay-graber.bsky.social for the fix, and to @bob.example.com. "
            "cc @carol@mastodon.social, or mail dave@example.com")
    assert normalise_social(post) == ("Huge thanks to @user and @user for the fix, and to @user. "
                                      "cc @user, or mail dave@example.com")


def test_a_handle_typed_against_the_next_sentence_keeps_the_sentence() -> None:
    """"@dril.Great" read as the domain handle "dril.Great" and the word went into "@user"; a handle written as a
    web host read as a URL ("@http"); a fediverse server keeps its whole domain whatever its case."""
    assert normalise_social("@dril.Great point, and @dril.greatPoint too") == \
        "@user.Great point, and @user.greatPoint too"
    assert normalise_social("ask @www.example.com or bob@www.example.com") == "ask @user or bob@www.example.com"
    assert normalise_social("cc @carol@Mastodon.Social and @alice.bsky.social.") == "cc @user and @user."


def test_a_url_in_chinese_or_japanese_text_ends_at_a_full_width_bracket() -> None:
    """"（https://example.com/a）今天" took the bracket and the words after it into the URL placeholder."""
    assert normalise_social("详情（https://example.com/a）今天有效。见https://x.jp/b、ありがとう") == \
        "详情(http)今天有效。见http、ありがとう"  # full-width brackets are then folded to ASCII ones


@pytest.mark.parametrize(("raw", "text"), [
    ("Great &amp; cheap, I <3 it &quot;really&quot;", 'Great & cheap, I <3 it "really"'),
    ("Loved it!<br /><br />Battery &gt; 10h. <b>Buy it</b>", "Loved it!\n\nBattery > 10h. Buy it"),
    ("a < b and c > d, <rant>why</rant>", "a < b and c > d, <rant>why</rant>"),
    ("<div>Sturdy &amp; quiet</div><div>Would buy again</div>", "Sturdy & quiet\nWould buy again"),
])
def test_reviews_decode_entities_beside_a_less_than_sign_and_read_their_line_breaks(raw: str, text: str) -> None:
    """ftfy leaves entities in any text with a "<", so "I <3 it &amp;" kept "&amp;"; a review export's "<br />"
    reached the model as markup. A "<" that is not HTML stays."""
    assert clean_document(new_document("review", "reviews.csv:2", raw), 1000)["text"] == text


def test_a_nul_inside_a_mastodon_status_is_removed_not_replaced() -> None:
    """The HTML parser turned a NUL into U+FFFD ("great\\ufffd phone"); outside HTML it was already removed."""
    post = clean_document(new_document("social", "statuses.json:2",
                                       "<p>Battery life is great\x00 on this phone <a href=\"https://mastodon.social/"
                                       "tags/review\" class=\"mention hashtag\">#<span>review</span></a></p>"), 1000)
    assert post["text"] == "Battery life is great on this phone #review"
    assert post["ingest_notes"] == ["1 control characters removed"]


def test_soft_hyphens_are_removed_with_the_other_invisible_characters() -> None:
    """A soft hyphen pasted from a web page hides inside a word: the model saw "avail\\u00adable", not "available"."""
    review = clean_document(new_document("review", "r:3", "Not avail\u00adable in stores, but deliv\u00adery was "
                                         "quick"), 1000)
    assert review["text"] == "Not available in stores, but delivery was quick"


def test_bidi_controls_written_as_html_entities_are_removed_and_noted() -> None:
    """An RLO written as ``&#x202E;`` in a status's HTML or ``&#8238;`` in a review is decoded before the controls
    are removed, so it never reached the text; but the note counted the raw text, where it was still an entity, and
    the spoofing attempt went unrecorded."""
    status = clean_document(new_document("social", "statuses.json:3", "<p>Five stars for the &#x202E;enohp-X&#x202C; "
                                         "from this seller</p>"), 1000)
    assert status["text"] == "Five stars for the enohp-X from this seller"
    assert status["ingest_notes"] == ["bidirectional control characters removed: 2 in text"]
    review = clean_document(new_document("review", "r:4", "Five stars for the &#8238;enohp-X&#8236; from this "
                                         "seller", subject="Best &#x202e;daolnwod&#x202c; ever"), 1000)
    assert review["text"] == "Five stars for the enohp-X from this seller"
    assert review["subject"] == "Best daolnwod ever"
    assert review["ingest_notes"] == ["bidirectional control characters removed: 2 in text, 2 in subject"]
