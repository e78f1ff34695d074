"""loadgen/eas/mime.py: messages parsed back with the standard library, the token, recipients."""

import email
import email.policy
import random
import re
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.eas import mime

RUN = "0a1b2c3d"


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def no_bare_lf(data):
    return re.search(rb"(?<!\r)\n", data) is None and re.search(rb"\r(?!\n)", data) is None


# --------------------------------------------------------------------------- token

def test_make_token_format():
    assert mime.make_token(RUN, 12, 345, 1700000000123) == "el1.0a1b2c3d.12.345.1700000000123"


@pytest.mark.parametrize("run", ["0A1B2C3D", "0a1b2c3", "0a1b2c3d4", "zzzzzzzz", "", None, 12345678])
def test_make_token_refuses_bad_run(run):
    with pytest.raises(ValueError):
        mime.make_token(run, 1, 2, 3)


def test_make_token_refuses_negative_numbers():
    with pytest.raises(ValueError):
        mime.make_token(RUN, -1, 2, 3)


def test_find_token_in_subject_and_header_value():
    token = mime.make_token(RUN, 7, 8, 9)
    assert mime.find_token(mime.subject_with("Budget", token)) == mime.Token(RUN, 7, 8, 9)
    assert mime.find_token(token) == mime.Token(RUN, 7, 8, 9)
    assert mime.find_token("  %s\r\n" % token) == mime.Token(RUN, 7, 8, 9)
    assert mime.subject_with("", token) == "[%s]" % token


def test_find_token_takes_the_last_one_a_reply_keeps_the_original():
    first = mime.make_token(RUN, 1, 1, 100)
    second = mime.make_token("ffffffff", 2, 5, 200)
    subject = mime.subject_with("RE: " + mime.subject_with("Budget", first), second)
    assert mime.find_token(subject) == mime.Token("ffffffff", 2, 5, 200)
    # a damaged last one: the last well-formed one
    assert mime.find_token(subject + " [el1.zz") == mime.Token("ffffffff", 2, 5, 200)


@pytest.mark.parametrize("text", [None, "", "hello", "[el1.", "el1.", "[el1.0a1b2c3d.1.2]", "el1.0a1b2c3d.1.2.3 tail",
                                  "[EL1.0a1b2c3d.1.2.3]", "[el1.0a1b2c3d.1.2.%s]" % ("9" * 40), b"[el1.0a1b2c3d.1.2.3]",
                                  "el1.0A1B2C3D.1.2.3"])
def test_find_token_none_for_non_tokens(text):
    assert mime.find_token(text) is None


@settings(max_examples=300, deadline=None)
@given(subject=st.text(max_size=200), sender=st.integers(0, 10**9), seq=st.integers(0, 10**9),
       sent_ms=st.integers(0, 10**15), run=st.text("0123456789abcdef", min_size=8, max_size=8))
def test_property_token_round_trips_through_any_subject(subject, sender, seq, sent_ms, run):
    token = mime.make_token(run, sender, seq, sent_ms)
    assert mime.find_token(mime.subject_with(subject, token)) == (run, sender, seq, sent_ms)
    assert mime.find_token(token) == (run, sender, seq, sent_ms)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="el1.[]0123456789abcdef ", max_size=120)))
def test_property_find_token_never_raises(text):
    found = mime.find_token(text)
    assert found is None or isinstance(found, mime.Token)


# --------------------------------------------------------------------------- build_message

def test_build_message_headers_body_and_token_parse_back():
    token = mime.make_token(RUN, 3, 4, 1700000000000)
    data = mime.build_message(
        sender="Alice Example <alice@example.com>", to=["Bob <bob@example.com>", "carol@example.com"],
        cc=["dave@example.com"], bcc=["erin@example.com"], subject="Quarterly numbers", text="Hello Bob,\nsee below.\n",
        token=token, in_reply_to="<orig@example.com>", references="<root@example.com> <orig@example.com>",
        message_id="<m1@example.com>", date=1700000000)
    assert no_bare_lf(data)
    assert data.isascii()
    msg = parse(data)
    assert msg["From"].addresses[0].addr_spec == "alice@example.com"
    assert [a.addr_spec for a in msg["To"].addresses] == ["bob@example.com", "carol@example.com"]
    assert [a.addr_spec for a in msg["Cc"].addresses] == ["dave@example.com"]
    assert [a.addr_spec for a in msg["Bcc"].addresses] == ["erin@example.com"]
    assert msg["Subject"] == "Quarterly numbers [%s]" % token
    assert msg[mime.TOKEN_HEADER] == token
    assert mime.find_token(msg["Subject"]) == mime.find_token(msg[mime.TOKEN_HEADER]) == (RUN, 3, 4, 1700000000000)
    assert msg["Message-ID"] == "<m1@example.com>"
    assert msg["In-Reply-To"] == "<orig@example.com>"
    assert msg["References"] == "<root@example.com> <orig@example.com>"
    assert msg["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"  # RFC 5322 3.3 zone, not the obsolete GMT
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == "Hello Bob,\r\nsee below.\r\n"  # the text's lines, CRLF on the wire


def test_build_message_without_token_or_optional_headers():
    data = mime.build_message(sender="a@example.com", to=["b@example.com"], subject="plain", text="x\n")
    msg = parse(data)
    assert msg["Subject"] == "plain"
    assert mime.TOKEN_HEADER not in msg
    assert "Cc" not in msg and "Bcc" not in msg and "In-Reply-To" not in msg
    assert msg["Message-ID"].endswith("@example.com>")  # a generated id in the sender's domain
    assert msg["Date"] is not None
    assert no_bare_lf(data)


def test_build_message_date_as_datetime():
    when = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    msg = parse(mime.build_message(sender="a@example.com", to=["b@example.com"], subject="s", text="t", date=when))
    assert msg["Date"].datetime == when


def test_build_message_html_alternative_and_attachments_round_trip():
    blob = bytes(range(256)) * 9
    data = mime.build_message(
        sender="a@example.com", to=["b@example.com"], subject="with files", text="plain part\n",
        html="<p>html part</p>\n", attachments=[("report.pdf", "application/pdf", blob), ("notes.txt", "text/plain", b"hi\r\n")])
    assert no_bare_lf(data)
    assert data.count(b"MIME-Version:") == 1  # the message's header only (RFC 2045 4)
    msg = parse(data)
    assert msg.get_content_type() == "multipart/mixed"
    body = msg.get_body(preferencelist=("plain",))
    assert body.get_content() == "plain part\r\n"
    assert msg.get_body(preferencelist=("html",)).get_content() == "<p>html part</p>\r\n"
    files = [(p.get_filename(), p.get_content_type(), p.get_payload(decode=True)) for p in msg.iter_attachments()]
    assert files == [("report.pdf", "application/pdf", blob), ("notes.txt", "text/plain", b"hi\r\n")]


@pytest.mark.parametrize("language,subject", [("ja", "会議の議題について"), ("de", "Größere Änderungen für Jörg")])
def test_build_message_non_ascii_subject_body_and_names(language, subject):
    text = mime.body_text(random.Random(5), 2000, language)
    token = mime.make_token(RUN, 1, 2, 3)
    data = mime.build_message(sender='"Jörg Müller" <joerg@example.com>', to=["会議室 <room@example.com>"],
                              subject=subject, text=text, html="<p>%s</p>" % text[:40], token=token)
    assert data.isascii()  # RFC 2047 encoded words and quoted-printable: 7-bit clean
    assert no_bare_lf(data)
    assert max(len(line) for line in data.split(b"\r\n")) <= 998  # RFC 5322 2.1.1
    msg = parse(data)
    assert msg["Subject"] == "%s [%s]" % (subject, token)
    assert msg["From"].addresses[0].display_name == "Jörg Müller"
    assert msg["To"].addresses[0].display_name == "会議室"
    plain = msg.get_body(preferencelist=("plain",))
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert plain.get_content().replace("\r\n", "\n") == text


def test_attachment_with_odd_type_falls_back():
    msg = parse(mime.build_message(sender="a@example.com", to=["b@example.com"], subject="s", text="t",
                                   attachments=[("x", "", b"\x00\x01")]))
    (part,) = list(msg.iter_attachments())
    assert part.get_content_type() == "application/octet-stream"
    assert part.get_payload(decode=True) == b"\x00\x01"


# --------------------------------------------------------------------------- recipients

def test_recipients_groups_display_names_duplicates_and_case():
    data = (b"From: a@example.com\r\n"
            b"To: \"Bob, Jr.\" <Bob@Example.COM>, carol@example.com, team: Dave <dave@example.com>, erin@example.com;\r\n"
            b"To: bob@example.com\r\n"
            b"Cc: =?utf-8?b?5Lya6K2w?= <Room@Example.com>, CAROL@example.com\r\n"
            b"Bcc: undisclosed-recipients:;\r\n"
            b"Bcc: Frank <frank@example.org>\r\n"
            b"Subject: x\r\n\r\nbody\r\n")
    to, cc, bcc = mime.recipients(data)
    assert to == ("bob@example.com", "carol@example.com", "dave@example.com", "erin@example.com")
    assert cc == ("room@example.com", "carol@example.com")  # per field: carol is in To and in Cc
    assert bcc == ("frank@example.org",)


def test_recipients_of_built_message():
    data = mime.build_message(sender="a@example.com", to=["B <b@example.com>", "b@example.com"],
                              cc=["C@EXAMPLE.com"], bcc=["d@example.com"], subject="s", text="t")
    assert mime.recipients(data) == (("b@example.com",), ("c@example.com",), ("d@example.com",))


@pytest.mark.parametrize("data", [b"", b"\xff\xfe\x00garbage", b"To: <<<>>>,,,;;;\r\n\r\n", b"To:\r\n\r\n",
                                  b"no headers at all", bytearray(b"To: x@example.com\r\n\r\n")])
def test_recipients_never_raises(data):
    to, cc, bcc = mime.recipients(data)
    assert isinstance(to, tuple) and isinstance(cc, tuple) and isinstance(bcc, tuple)


def test_recipients_bare_lf_message():
    assert mime.recipients(b"To: x@example.com\nCc: y@example.com\n\nbody\n") == (("x@example.com",), ("y@example.com",), ())


# --------------------------------------------------------------------------- body_text

@pytest.mark.parametrize("language", mime.LANGUAGES)
def test_body_text_size_language_and_determinism(language):
    text = mime.body_text(random.Random(42), 4000, language)
    assert text == mime.body_text(random.Random(42), 4000, language)
    assert 3800 <= len(text.encode("utf-8")) <= 4400
    assert all(len(line) < 78 for line in text.split("\n"))
    if language == "ja":
        assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in text)
    else:
        assert " " in text


def test_body_text_languages_and_small_sizes():
    assert {"en", "de", "fr", "es", "ja"} <= set(mime.LANGUAGES)
    assert mime.body_text(random.Random(1), 0) == ""
    assert mime.body_text(random.Random(1), -5, "en") == ""
    assert 1 <= len(mime.body_text(random.Random(1), 1, "en").encode()) < 40
    # a random language when none is given, still deterministic
    assert mime.body_text(random.Random(9), 300) == mime.body_text(random.Random(9), 300)
    assert mime.body_text(random.Random(9), 300, "xx") == mime.body_text(random.Random(9), 300, None)
