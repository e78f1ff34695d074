"""Differential test: every mail builder's output decoded by an independent WBXML implementation.

libwbxml's ``wbxml2xml`` (Debian ``libwbxml2-utils``, language ACTIVESYNC) turns our bytes into
XML, compared element by element with the tree our decoder gives: same element names (libwbxml's
older names for a few tags, listed in LIBWBXML_NAMES, as tests/wbxml/test_wbxml_libwbxml.py
explains), namespaces, nesting, text, and opaque data (libwbxml shows it as base64).

Skipped when the tool is not installed, unless EASLOAD_REQUIRE_LIBWBXML is set (then it fails).
"""

import base64
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

import _wbxml
from loadgen.eas import mail

WBXML2XML = shutil.which("wbxml2xml")

# (page, our name) -> libwbxml's name, for the tags these builders use (libwbxml 0.11: older spec names)
LIBWBXML_NAMES = {
    ("ComposeMail", "Mime"): "MIME",
    ("Email", "Status"): "FlagStatus",
    ("Tasks", "UtcStartDate"): "UTCStartDate",
    ("Tasks", "UtcDueDate"): "UTCDueDate",
    ("Calendar", "Timezone"): "TimeZone",
    ("Calendar", "DtStamp"): "DTStamp",
}

MIME = ("From: \"Jörg\" <joerg@example.com>\r\nTo: bob@example.com\r\nSubject: =?utf-8?b?5Lya6K2w?=\r\n\r\n"
        "body\r\n").encode("utf-8") + bytes(range(256))
NOW = 1714557600


def corpus():
    """(name, bytes) of every builder, with its optional elements on and off."""
    full = mail.SyncCollection("2", "k2", window_size=25, filter_type=3, body_type=2, truncation=5120, commands=(
        mail.Change("2:1", mail.email_read(True)), mail.Change("2:2", mail.email_flag(2, at=NOW)),
        mail.Change("2:3", mail.email_flag(1, at=NOW)), mail.Change("2:4", mail.email_flag(0)), mail.Delete("2:5"),
        mail.Fetch("2:6")))
    adds = mail.SyncCollection("8", "k8", deletes_as_moves=False, get_changes=False, commands=(
        mail.Add("c1", mail.calendar_item("Lunch at Größe", NOW, NOW + 3600, location="会議室", uid="u1", reminder=15,
                                          at=NOW)),
        mail.Add("c2", mail.contact_item("Ann", "Lee", "ann@example.com", phone="+1 555", company="Contoso")),
        mail.Add("c3", mail.task_item("Call back", due=NOW))))
    return [
        ("send_mail", mail.send_mail("client-1", MIME)),
        ("send_mail_nosave", mail.send_mail("client-2", MIME, save_in_sent=False)),
        ("smart_reply", mail.smart_reply("r1", MIME, "5", "5:12", replace_mime=True)),
        ("smart_reply_inbox", mail.smart_reply("r2", MIME, None, "2:1", save_in_sent=False)),
        ("smart_forward_long", mail.smart_forward("f1", MIME, None, None, long_id="RgAAAAD+/=")),
        ("smart_forward_instance", mail.smart_forward("f2", MIME, "8", "8:1", instance_id="2024-05-01T10:00:00.000Z")),
        ("sync_initial", mail.sync_request([mail.SyncCollection("2", "0"), mail.SyncCollection("8", "0")])),
        ("sync_options", mail.sync_request([mail.SyncCollection("2", "k", body_type=4, filter_type=0),
                                            mail.SyncCollection("9", "k9")], window_size=100)),
        ("sync_commands", mail.sync_request([full, adds])),
        ("move_one", mail.move_items([("2:1", "2", "12")])),
        ("move_many", mail.move_items([("2:1", "2", "4"), ("2:2", "2", "12")])),
        ("meeting_response", mail.meeting_response(mail.TENTATIVE, "2", "2:7")),
        ("meeting_response_instance", mail.meeting_response(mail.DECLINE, "2", "2:8", instance_id="2024-05-01T10:00:00.000Z")),
        ("search_gal", mail.search_gal("Jö")),
        ("search_mailbox", mail.search_mailbox("budget 会議", "2", range_="0-4", body_type=2, truncation=256)),
        ("search_mailbox_all", mail.search_mailbox("x")),
        ("resolve", mail.resolve_recipients(["ann@example.com", "Bob"])),
        ("resolve_availability", mail.resolve_recipients(["ann@example.com"], (NOW, NOW + 7200), max_ambiguous=3)),
        ("estimate_14", mail.get_item_estimate([("k2", "2", 3), ("k8", "8", None, "Calendar"), ("k9", "9", None)], 140)),
        ("estimate_12", mail.get_item_estimate([("k2", "2", 3)], 121)),
        ("oof_get", mail.settings_oof_get()),
        ("oof_set_on", mail.settings_oof_set(True, "Away <until> Monday & back")),
        ("oof_set_off", mail.settings_oof_set(False)),
        ("user_information", mail.settings_user_information()),
        ("ping_folders", mail.ping_folders(480, [("2", "Email"), ("8", "Calendar"), ("9", "Contacts"), ("7", "Tasks")])),
    ]


@pytest.fixture(scope="module")
def wbxml2xml(tmp_path_factory):
    if WBXML2XML is None:
        if os.environ.get("EASLOAD_REQUIRE_LIBWBXML"):
            pytest.fail("libwbxml's wbxml2xml is not on PATH (EASLOAD_REQUIRE_LIBWBXML is set); run .ci/system-packages.sh")
        pytest.skip("libwbxml's wbxml2xml (Debian libwbxml2-utils) not installed")
    folder = tmp_path_factory.mktemp("mail-libwbxml")

    def run(name, data):
        src, dst = folder / (name + ".wbxml"), folder / (name + ".xml")
        src.write_bytes(data)
        done = subprocess.run([WBXML2XML, "-m", "0", "-l", "ACTIVESYNC", "-o", str(dst), str(src)],
                              capture_output=True, timeout=30)
        assert done.returncode == 0, "wbxml2xml failed on %s: %r" % (name, done.stderr)
        return dst.read_bytes()

    return run


def compare(ours, theirs, path):
    """Our element ``(tag, content)`` against libwbxml's ElementTree element, recursively."""
    page, _, name = ours[0].partition(":")
    namespace, _, their_name = theirs.tag[1:].partition("}")
    where = "%s/%s" % (path, ours[0])
    assert their_name == LIBWBXML_NAMES.get((page, name), name), where
    assert namespace == page + ":", where
    content = ours[1]
    kids = list(theirs)
    if type(content) is list:
        assert len(kids) == len(content), (where, [k.tag for k in kids])
        for mine, their in zip(content, kids):
            compare(mine, their, where)
        return
    assert kids == [], where
    if type(content) is bytes:
        assert theirs.text == base64.b64encode(content).decode("ascii"), where
    else:
        assert (theirs.text or None) == (content or None), where


@pytest.mark.parametrize("name,data", corpus(), ids=[name for name, _ in corpus()])
def test_libwbxml_reads_what_we_build(wbxml2xml, name, data):
    ours = _wbxml.decode(data)
    compare(ours, ET.fromstring(wbxml2xml(name, data)), "")


def test_corpus_covers_every_builder():
    built = {name for name, _ in corpus()}
    assert len(built) == len(corpus())
    names = {"send_mail", "smart_reply", "smart_forward_long", "sync_commands", "move_one", "meeting_response",
             "search_gal", "search_mailbox", "resolve", "estimate_14", "estimate_12", "oof_get", "oof_set_on",
             "user_information", "ping_folders"}
    assert names <= built
