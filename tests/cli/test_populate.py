"""``easload populate``: the scenario's mailboxes filled over SMTP, against a small SMTP server of this
test on 127.0.0.1 (RFC 5321 commands EHLO, AUTH PLAIN (RFC 4954), MAIL, RCPT, DATA, RSET, NOOP, QUIT)."""

import base64
import socket
import socketserver
import threading
from email import message_from_bytes
from email.header import decode_header, make_header
from email.utils import parseaddr

import pytest

from loadgen.cli import app

SCENARIO = """
name = "populate-test"
seed = 4
[target]
url = "https://mail.example.com/Microsoft-Server-ActiveSync"
[auth]
users = 5
password = "x"
[population]
devices = 5
devices_per_user = 1
[mail]
send_per_hour = 1
attachment_share = 0.3
html_share = 0.5
body_bytes = [100, 3000]
"""


class _Handler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        srv = self.server
        srv.sessions += 1
        self.reply("220 test ESMTP")
        sender, rcpts, sent_here = None, [], 0
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").strip()
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250-test\r\n250-8BITMIME\r\n" + (b"250-AUTH PLAIN\r\n" if srv.password else b"")
                                 + b"250 SIZE 100000000\r\n")
            elif verb == "AUTH":
                parts = cmd.split()
                given = base64.b64decode(parts[2]).split(b"\0") if len(parts) > 2 else []
                if given[1:] == [srv.user.encode(), srv.password.encode()]:
                    srv.authed = True
                    self.reply("235 ok")
                else:
                    self.reply("535 bad credentials")
            elif verb == "MAIL":
                if srv.password and not srv.authed:
                    self.reply("530 authentication required")
                    continue
                sender, rcpts = parseaddr(cmd[10:])[1], []
                self.reply("250 ok")
            elif verb == "RCPT":
                rcpt = parseaddr(cmd[8:])[1]
                if rcpt in srv.refuse:
                    self.reply("550 no such user")
                else:
                    rcpts.append(rcpt)
                    self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go on")
                data = []
                while True:
                    chunk = self.rfile.readline()
                    if chunk in (b".\r\n", b""):
                        break
                    data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                srv.messages.append((sender, tuple(rcpts), b"".join(data)))
                sent_here += 1
                if srv.close_after and sent_here >= srv.close_after:
                    self.reply("250 queued")
                    self.reply("421 too many messages in this session")
                    return
                self.reply("250 queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class SMTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, user=None, password=None, refuse=(), close_after=0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.user, self.password, self.refuse, self.close_after = user, password, set(refuse), close_after
        self.authed = False
        self.messages, self.sessions = [], 0

    @property
    def address(self):
        return "127.0.0.1:%d" % self.server_address[1]


@pytest.fixture
def smtp():
    servers = []

    def make(**kw):
        server = SMTPServer(**kw)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "populate.toml"
    path.write_text(SCENARIO)
    return str(path)


def _subject(msg):
    return str(make_header(decode_header(msg["Subject"])))


def test_a_deterministic_history_from_other_users_in_several_languages(smtp, scenario_file, capsys):
    server = smtp()
    assert app.main(["populate", scenario_file, "--smtp", server.address, "--days", "2", "--per-day", "3"]) == 0
    out = capsys.readouterr().out
    assert "sent 30 messages" in out and "to 5 mailboxes" in out
    assert len(server.messages) == 30
    users = {"user%d@example.com" % n for n in range(5)}
    per_user = {}
    for sender, rcpts, data in server.messages:
        (rcpt,) = rcpts
        assert rcpt in users and sender in users and sender != rcpt  # from another user of the run
        per_user[rcpt] = per_user.get(rcpt, 0) + 1
        msg = message_from_bytes(data)
        assert msg["From"] == sender and msg["To"] == rcpt and msg["Date"]
        assert msg["Message-ID"].startswith("<populate.4.")
    assert per_user == {u: 6 for u in users}
    subjects = [_subject(message_from_bytes(d)) for _s, _r, d in server.messages]
    assert any(not s.isascii() for s in subjects) and any(s.isascii() for s in subjects)  # not an all-Latin filler
    kinds = {message_from_bytes(d).get_content_type() for _s, _r, d in server.messages}
    assert "multipart/mixed" in kinds and len(kinds) >= 2  # attachments and HTML from the scenario's shares
    sizes = sorted(len(d) for _s, _r, d in server.messages)
    assert sizes[-1] > 3 * sizes[0]
    # the same command sends the same messages (Date headers aside)
    again = smtp()
    assert app.main(["populate", scenario_file, "--smtp", again.address, "--days", "2", "--per-day", "3"]) == 0

    def without_date(data):
        return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"Date:"))

    assert [(s, r, without_date(d)) for s, r, d in again.messages] == \
           [(s, r, without_date(d)) for s, r, d in server.messages]


def test_smtp_auth_password_from_the_environment_never_shown(smtp, scenario_file, capsys, monkeypatch):
    secret = "S3cret-populate-pw"
    server = smtp(user="loader", password=secret)
    monkeypatch.setenv("EASLOAD_SMTP_PW", secret)
    assert app.main(["populate", scenario_file, "--smtp", server.address, "--days", "1", "--per-day", "1",
                     "--smtp-user", "loader", "--smtp-password-env", "EASLOAD_SMTP_PW"]) == 0
    assert len(server.messages) == 5
    # a wrong password: one line, exit 3, the password nowhere
    monkeypatch.setenv("EASLOAD_SMTP_PW", "wrong-" + secret)
    assert app.main(["populate", scenario_file, "--smtp", server.address, "--days", "1", "--per-day", "1",
                     "--smtp-user", "loader", "--smtp-password-env", "EASLOAD_SMTP_PW"]) == 3
    captured = capsys.readouterr()
    assert "refused the login of loader" in captured.err
    assert secret not in captured.out + captured.err
    monkeypatch.delenv("EASLOAD_SMTP_PW")
    assert app.main(["populate", scenario_file, "--smtp", server.address, "--smtp-user", "loader",
                     "--smtp-password-env", "EASLOAD_SMTP_PW"]) == 2
    assert "EASLOAD_SMTP_PW" in capsys.readouterr().err


def test_safety_rail_dry_run_and_usage(smtp, scenario_file, capsys):
    server = smtp()
    assert app.main(["populate", scenario_file, "--smtp", "smtp.example.com:25"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert app.main(["populate", scenario_file, "--smtp", server.address, "--days", "4", "--per-day", "10",
                     "--dry-run"]) == 0
    assert "5 mailboxes x 4 days x 10 messages a day = 200 messages" in capsys.readouterr().out
    assert server.sessions == 0 and server.messages == []
    for bad in (["--days", "0"], ["--per-day", "-1"], ["--smtp", "nohostport"], ["--smtp", "127.0.0.1:99999"]):
        assert app.main(["populate", scenario_file, *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("easload: ") and "Traceback" not in err


def test_a_server_that_is_not_there_or_refuses(smtp, scenario_file, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    assert app.main(["populate", scenario_file, "--smtp", "127.0.0.1:%d" % port, "--per-day", "1"]) == 3
    err = capsys.readouterr().err
    assert "cannot reach the SMTP server" in err and "Traceback" not in err
    # a recipient the server refuses: counted, the others sent, exit 1
    server = smtp(refuse={"user2@example.com"})
    assert app.main(["populate", scenario_file, "--smtp", server.address, "--days", "1", "--per-day", "2"]) == 1
    out = capsys.readouterr().out
    assert "sent 8 messages" in out and "2 refused by the server" in out
    assert len(server.messages) == 8


def test_a_server_that_closes_sessions_gets_a_fresh_one(smtp, scenario_file, capsys):
    server = smtp(close_after=4)
    assert app.main(["populate", scenario_file, "--smtp", server.address, "--days", "1", "--per-day", "2"]) == 0
    assert len(server.messages) == 10 and server.sessions >= 3
    assert "sent 10 messages" in capsys.readouterr().out
