"""``easload populate SCENARIO``: the scenario's test mailboxes on a real server filled over SMTP.

A load test of a real server with empty mailboxes measures a server that does not exist: Sync,
Search and the content index cost what the mailboxes hold.  ``populate`` gives every user of the
scenario a history of N days at a daily rate, before the run, through the server's own SMTP
submission (RFC 5321; RFC 3207 STARTTLS; RFC 4954 AUTH): messages from other users of the run (the
addresses the devices use, loadgen/run/context.py RunLoad.address), written by
loadgen/eas/mime.py build_message (RFC 5322, CRLF), with bodies in several languages and sizes
(eas/mime.body_text: an all-Latin filler would inflate the server's content index unlike real mail)
and the scenario's [mail] shares of HTML and attachments.

Everything is drawn from the scenario's seed and the user's index: the same command sends the same
messages (the same Message-IDs, ``<populate.SEED.USER.N@domain>``, so a second pass is recognisable
as one); only the Date headers follow the day it runs.  The SMTP password comes from an environment
variable named by ``--smtp-password-env``, never from the command line, and is never printed.
Cleaning up afterwards: ``easload devices SCENARIO --format powershell`` for the partnerships; the
README says how to empty the mailboxes.
"""

import math
import os
import random
import re
import smtplib
import socket
import ssl
import sys
import time

from loadgen.eas import mime

DEFAULT_DAYS = 3
MAX_DAYS = 365
MAX_PER_DAY = 1000
MAX_MESSAGES = 10_000_000
_ATTACHMENT_KB = (20, 400)  # an attachment's size when the scenario says nothing (range, KiB)
_SUBJECTS = {
    "en": ("Quarterly numbers", "Agenda for Friday", "Re: project plan", "Customer call notes", "Draft report"),
    "de": ("Quartalszahlen", "Tagesordnung für Freitag", "AW: Projektplan", "Notizen zum Kundentermin"),
    "fr": ("Chiffres du trimestre", "Ordre du jour de vendredi", "RE: plan du projet", "Compte rendu client"),
    "es": ("Cifras del trimestre", "Agenda del viernes", "RE: plan del proyecto", "Notas de la llamada"),
    "ja": ("四半期の数字", "金曜日の議題", "RE: プロジェクト計画", "顧客との電話メモ"),
}


class PopulateError(Exception):
    """The SMTP server could not be reached or refused the session (exit 3)."""


def daily_rate(sc):
    """Messages a user receives per day: the scenario's workload profile when it has one
    (``received_per_day``), else what [mail] makes the users send each other over an 8-hour day
    (send_per_hour x devices per user x 8 x mean To recipients x internal share), else 20 (the
    embedded target's own history, loadgen/exchange/state.py daily_messages); at most MAX_PER_DAY."""
    workload = getattr(sc, "workload", None)  # [workload] (loadgen/scenario.py WorkloadConfig), when there is one
    weights = getattr(workload, "profiles", None) or {}
    definitions = getattr(workload, "definitions", None) or {}
    total = sum(w for n, w in weights.items() if n in definitions)
    if total > 0:
        mean = sum(w * definitions[n].received_per_day for n, w in weights.items() if n in definitions) / total
        return min(MAX_PER_DAY, max(1, round(mean)))
    m = sc.mail
    if m.send_per_hour > 0:
        mean_to = (m.to[0] + m.to[1]) / 2.0
        rate = m.send_per_hour * sc.population.devices_per_user * 8 * mean_to * m.internal_share
        return min(MAX_PER_DAY, max(1, round(rate)))
    return 20


def plan(sc, days, per_day):
    """(users, messages in all): what a populate of ``days`` at ``per_day`` sends."""
    users = sc.auth.users
    return users, users * days * per_day


def _attachment(rng, kb):
    """``kb`` KiB of bytes that do not compress away (a server stores what a phone sends)."""
    return rng.randbytes(kb * 1024)


def messages(sc, days, per_day, now=None):
    """Every message of the history as (recipient address, sender address, bytes, language), user by
    user, drawn from (seed, user index): deterministic but the Date headers."""
    from loadgen.run.context import RunLoad

    load = RunLoad.for_run(sc)
    users = sc.auth.users
    m = sc.mail
    now = time.time() if now is None else now
    day0 = math.floor(now / 86400.0) * 86400.0 - days * 86400.0  # midnight UTC, N days ago
    lo, hi = m.body_bytes
    for u in range(users):
        rng = random.Random("populate/%d/%d" % (sc.seed, u))
        to = load.address(u)
        domain = to.rpartition("@")[2] or "example.com"
        for n in range(days * per_day):
            day = n // per_day
            sender_index = rng.randrange(users - 1) if users > 1 else 0
            if users > 1 and sender_index >= u:
                sender_index += 1  # another user of the run
            sender = load.address(sender_index)
            language = rng.choice(mime.LANGUAGES)
            # sizes log-uniform over the scenario's range: many short messages, a few long ones
            size = int(math.exp(rng.uniform(math.log(max(1, lo)), math.log(max(lo, hi, 1)))))
            text = mime.body_text(rng, size, language)
            html = None
            if rng.random() < m.html_share:
                html = "<html><body>%s</body></html>" % "".join(
                    "<p>%s</p>" % line for line in text.splitlines())
            attachments = ()
            if rng.random() < m.attachment_share:
                kb = rng.randint(*_ATTACHMENT_KB)
                attachments = (("report-%d.bin" % n, "application/octet-stream", _attachment(rng, kb)),)
            when = day0 + day * 86400.0 + 7 * 3600 + rng.random() * 11 * 3600  # 07:00 to 18:00 of that day
            subject = "%s (%d)" % (rng.choice(_SUBJECTS[language]), n + 1)
            data = mime.build_message(
                sender=sender, to=(to,), subject=subject, text=text, html=html, attachments=attachments,
                date=when, message_id="<populate.%d.%d.%d@%s>" % (sc.seed, u, n, domain))
            yield to, sender, _fixed_boundaries(data, "%d.%d.%d" % (sc.seed, u, n)), language


_BOUNDARY = re.compile(rb"={15}\d+==")


def _fixed_boundaries(data, tag):
    """The ``email`` package's random multipart boundaries (RFC 2046 5.1.1) replaced by ones named
    after the message (the same every time; "_" never occurs in base64 or quoted-printable text)."""
    found = []
    for b in _BOUNDARY.findall(data):
        if b not in found:
            found.append(b)
    for i, b in enumerate(found):
        data = data.replace(b, b"=_easload.%s.%d" % (tag.encode(), i))
    return data


class Sender:
    """One SMTP session, opened again once when the server drops it (servers limit messages per
    session); ``refused`` counts recipients the server would not take."""

    def __init__(self, host, port, starttls=False, user=None, password=None, ca_file=None, insecure=False,
                 timeout=30.0):
        self.host, self.port = host, port
        self.starttls = starttls
        self.user, self.password = user, password
        self.ca_file, self.insecure = ca_file, insecure
        self.timeout = timeout
        self.smtp = None
        self.sent = self.refused = self.sessions = 0

    def _open(self):
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout, local_hostname="easload.localdomain")
        except (OSError, smtplib.SMTPException) as exc:
            raise PopulateError("cannot reach the SMTP server %s:%d: %s" % (self.host, self.port, _why(exc))) from None
        try:
            smtp.ehlo()
            if self.starttls:
                context = ssl.create_default_context(cafile=self.ca_file)
                if self.insecure:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self.password or "")
        except smtplib.SMTPAuthenticationError:
            smtp.close()
            raise PopulateError("the SMTP server %s:%d refused the login of %s" % (self.host, self.port, self.user)) \
                from None
        except (OSError, smtplib.SMTPException) as exc:
            smtp.close()
            raise PopulateError("SMTP session with %s:%d failed: %s" % (self.host, self.port, _why(exc))) from None
        self.smtp = smtp
        self.sessions += 1

    def send(self, sender, recipient, data):
        for attempt in (0, 1):
            if self.smtp is None:
                self._open()
            try:
                self.smtp.sendmail(sender, [recipient], data)
                self.sent += 1
                return True
            except smtplib.SMTPRecipientsRefused:
                self.refused += 1
                return False
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                if exc.smtp_code in (421,) and attempt == 0:  # service closing: a fresh session, once
                    self._drop()
                    continue
                self.refused += 1
                return False
            except (smtplib.SMTPServerDisconnected, OSError):
                self._drop()
                if attempt:
                    raise PopulateError("the SMTP server %s:%d keeps closing the session" % (self.host, self.port)) \
                        from None
        return False

    def _drop(self):
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

    def close(self):
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def _why(exc):
    """One line about a connection problem, without anything the server said beyond its code."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return "SMTP %d" % exc.smtp_code
    if isinstance(exc, socket.timeout):
        return "timed out"
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]


def run(sc, *, host, port, days, per_day, starttls=False, user=None, password=None, ca_file=None,
        insecure=False, dry_run=False, out=None, now=None):
    """Send the history (or, ``dry_run``, only say what would be sent); (sent, refused)."""
    out = out or sys.stdout
    users, total = plan(sc, days, per_day)
    where = "%s:%d%s" % (host, port, " (STARTTLS)" if starttls else "")
    if dry_run:
        out.write("populate %s: %d mailboxes x %d days x %d messages a day = %d messages over SMTP %s "
                  "(dry run: nothing sent)\n" % (sc.name, users, days, per_day, total, where))
        return 0, 0
    sender = Sender(host, port, starttls, user, password, ca_file, insecure)
    languages = {}
    size = 0
    try:
        for to, frm, data, language in messages(sc, days, per_day, now):
            if sender.send(frm, to, data):
                languages[language] = languages.get(language, 0) + 1
                size += len(data)
    finally:
        sender.close()
    mix = ", ".join("%s %d" % (lang, languages[lang]) for lang in sorted(languages))
    out.write("populate %s: sent %d messages (%.1f MB; %s) to %d mailboxes over SMTP %s in %d session(s)%s\n"
              % (sc.name, sender.sent, size / 1e6, mix or "none", users, where, sender.sessions,
                 "; %d refused by the server" % sender.refused if sender.refused else ""))
    return sender.sent, sender.refused


def password_from_env(name):
    """The SMTP password from the environment variable ``name`` (None: no AUTH)."""
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise ValueError("the environment variable %s (--smtp-password-env) is not set" % name)
    return value


__all__ = ["daily_rate", "messages", "plan", "run", "Sender", "PopulateError", "password_from_env"]
