"""Notifications: e-mail (smtplib) and webhooks (HTTP POST of a JSON event).

What to report is queued in the `outbox` table by the transaction that makes
it happen (a workflow ends, an ensemble is auto-held, a trigger fails or
works again), one
row per configured target, so nothing is lost across a crash and the engine
pays one INSERT ... SELECT for it.  One sender thread delivers the rows, never
the scheduler: a failed delivery is tried again after 1, 2, 4, ... seconds (at
most an hour apart) and given up after MAX_ATTEMPTS.  A row being sent when
the daemon dies is sent again after the restart: delivery is at least once,
and each event carries the outbox `id` to recognise a repeat.
"""

import email.message
import json
import logging
import os
import pwd
import smtplib
import socket
import time
import urllib.error
import urllib.request

from .. import __version__, loops
from . import store

log = logging.getLogger(__name__)

EMAIL, WEBHOOK = "email", "webhook"
MAX_ATTEMPTS = 12      # 1 + 2 + ... + 2048 s: about an hour of trying, then failed
MAX_BACKOFF = 3600.0
MAX_WAIT = 60.0
TIMEOUT = 10.0


def targets(cfg):
    """[(channel, target)] from NOTIFY_EMAIL and NOTIFY_WEBHOOK (a string or a list)."""
    out = []
    for channel, key in ((EMAIL, "NOTIFY_EMAIL"), (WEBHOOK, "NOTIFY_WEBHOOK")):
        value = cfg.get(key)
        for target in ([value] if isinstance(value, str) else list(value or ())):
            if str(target).strip():
                out.append((channel, str(target).strip()))
    return out


def default_sender():
    return "%s@%s" % (pwd.getpwuid(os.getuid()).pw_name, socket.gethostname())


def subject(event):
    kind = event.get("event")
    if kind == "workflow.ended":
        return "[pegasus-em] %s.%s %s" % (event.get("ensemble"), event.get("workflow"),
                                          event.get("state"))
    if kind == "ensemble.held":
        return "[pegasus-em] ensemble %s HELD (auto-hold)" % event.get("ensemble")
    if kind == "trigger.failed":
        return "[pegasus-em] trigger %s.%s failed" % (event.get("ensemble"), event.get("trigger"))
    if kind == "trigger.recovered":
        return "[pegasus-em] trigger %s.%s works again" % (event.get("ensemble"),
                                                           event.get("trigger"))
    return "[pegasus-em] %s" % kind


def body(event):
    lines = [subject(event)[len("[pegasus-em] "):], ""]
    lines += ["%s: %s" % (k, event[k]) for k in sorted(event) if event[k] is not None]
    return "\n".join(lines) + "\n"


class Notifier(loops.Loop):
    """The sender thread; `tick(now)` delivers what is due and says when to look again."""

    def __init__(self, db, smtp_host="localhost", smtp_port=25, sender=None, clock=time.time,
                 backoff=1.0, max_attempts=MAX_ATTEMPTS, timeout=TIMEOUT):
        self.db = db
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.sender = sender or default_sender()
        self.clock = clock
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.timeout = timeout
        super().__init__("notify", log)

    def tick(self, now=None):
        """Deliver every due notification; -> seconds until the next is due."""
        now = self.clock() if now is None else now
        with self.db.read() as conn:
            due = store.due_notifications(conn, now)
        for row in due:
            if self.stopping.is_set():
                break
            self._deliver(row)
        with self.db.read() as conn:
            next_try = store.next_notification_time(conn)
        return MAX_WAIT if next_try is None else max(0.0, min(MAX_WAIT, next_try - now))

    def _deliver(self, row):
        outbox_id, channel, target, kind, payload, attempts = row
        event = json.loads(payload)
        event["id"] = outbox_id
        try:
            if channel == EMAIL:
                self.send_email(target, event)
            elif channel == WEBHOOK:
                self.send_webhook(target, event)
            else:
                raise ValueError("unknown channel %r" % channel)
        except Exception as e:  # any failure of a delivery is retried, never fatal
            self._failed(outbox_id, channel, target, attempts + 1, "%s: %s"
                         % (type(e).__name__, e))
            return
        with self.db.write() as conn:
            store.notification_sent(conn, outbox_id, self.clock())
        log.info("notified %s %s: %s", channel, target, subject(event))

    def _failed(self, outbox_id, channel, target, attempts, error):
        now = self.clock()
        if attempts >= self.max_attempts:
            next_try = None
            log.warning("giving up notifying %s %s after %d attempts: %s", channel, target,
                        attempts, error)
        else:
            next_try = now + min(MAX_BACKOFF, self.backoff * 2 ** (attempts - 1))
            log.info("notifying %s %s failed (attempt %d): %s", channel, target, attempts,
                     error)
        with self.db.write() as conn:
            store.notification_failed(conn, outbox_id, now, error[:500], next_try)

    # ---- channels ----------------------------------------------------------

    def send_webhook(self, url, event):
        req = urllib.request.Request(
            url, data=json.dumps(event, sort_keys=True).encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json",
                     "User-Agent": "pegasus-em/%s" % __version__})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            e.close()
            raise RuntimeError("HTTP %d %s" % (e.code, e.reason))

    def send_email(self, address, event):
        msg = email.message.EmailMessage()
        msg["Subject"] = subject(event)
        msg["From"] = self.sender
        msg["To"] = address
        msg.set_content(body(event))
        with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout) as smtp:
            smtp.send_message(msg)
