"""A real SMTP server for the keycontacts tests (aiosmtpd), driven by kc_testkit::smtp.

It serves on the listening socket it inherits as its standard input (the Rust side binds the
port, so no port is ever raced for), and:

- appends one JSON line per accepted message to the journal (--journal), written and flushed
  BEFORE the 250 reply, so a message the client saw accepted is always in the journal;
- appends one JSON line per command it refused because it was told to;
- reads the control file (--control, replaced atomically by the Rust side) at every RCPT and
  DATA: it may ask to answer the next N commands of a kind with a given code and text, or to
  wait a while before answering DATA (a slow server).

Usage: python3 smtp_sink.py --journal PATH --control PATH < listening-socket
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import socket
import sys

from aiosmtpd.smtp import SMTP


class Control:
    """The state the Rust side asked for, re-read from the control file at every command.

    The file holds `{"fail": [{"seq", "command", "rcpt", "count", "code", "text"}],
    "data_delay_ms"}`: each failure spec answers its next `count` commands (`RCPT` or `DATA`,
    only those for `rcpt` when it is not null) with `code` and `text`.
    """

    def __init__(self, path):
        self.path = path
        # Failures armed before this process started (before a restart) are not re-armed.
        self.remaining = {int(spec.get("seq", 0)): 0 for spec in self.read().get("fail", [])}

    def read(self):
        try:
            with open(self.path, "r", encoding="utf-8") as handle:
                return json.load(handle)
        except (FileNotFoundError, ValueError):
            return {}

    def take_failure(self, command, rcpts):
        """The (code, text) to answer this command with, or None to accept it."""
        rcpts = [rcpt.lower() for rcpt in rcpts]
        for spec in self.read().get("fail", []):
            seq = int(spec.get("seq", 0))
            if seq not in self.remaining:
                self.remaining[seq] = int(spec.get("count", 0))
            if spec.get("command") != command:
                continue
            wanted = spec.get("rcpt")
            if wanted is not None and wanted.lower() not in rcpts:
                continue
            if self.remaining[seq] > 0:
                self.remaining[seq] -= 1
                return int(spec.get("code", 451)), str(spec.get("text", "try again later"))
        return None

    def data_delay(self):
        return max(0, int(self.read().get("data_delay_ms", 0))) / 1000.0


class Journal:
    """Append-only JSON lines, flushed at once."""

    def __init__(self, path):
        self.handle = open(path, "a", encoding="utf-8")

    def write(self, record):
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()


def part_text(message, subtype):
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != "text/" + subtype:
        return None
    return part.get_content()


def describe(envelope):
    raw = envelope.original_content or b""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    headers = [[name, str(value)] for name, value in message.items()]
    return {
        "event": "message",
        "mail_from": envelope.mail_from,
        "rcpt_tos": list(envelope.rcpt_tos),
        "subject": str(message.get("Subject", "")),
        "from": str(message.get("From", "")),
        "to": str(message.get("To", "")),
        "content_language": str(message.get("Content-Language", "")),
        "message_id": str(message.get("Message-ID", "")),
        "headers": headers,
        "content_type": message.get_content_type(),
        "multipart_alternative": message.get_content_type() == "multipart/alternative",
        "text": part_text(message, "plain"),
        "html": part_text(message, "html"),
        "raw": raw.decode("utf-8", errors="replace"),
    }


class Handler:
    def __init__(self, control, journal):
        self.control = control
        self.journal = journal

    def refused(self, command, envelope, code, text, address=None):
        self.journal.write({
            "event": "refused",
            "command": command,
            "code": code,
            "text": text,
            "mail_from": envelope.mail_from,
            "rcpt_tos": [address] if address is not None else list(envelope.rcpt_tos),
        })
        return "%d %s" % (code, text)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        failure = self.control.take_failure("RCPT", [address])
        if failure is not None:
            return self.refused("RCPT", envelope, failure[0], failure[1], address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        failure = self.control.take_failure("DATA", envelope.rcpt_tos)
        if failure is not None:
            return self.refused("DATA", envelope, failure[0], failure[1])
        try:
            record = describe(envelope)
        except Exception as error:  # a message the parser cannot read is a test failure too
            record = {
                "event": "message",
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "parse_error": repr(error),
                "raw": (envelope.original_content or b"").decode("utf-8", errors="replace"),
            }
        # Recorded before the reply: whatever the client saw accepted is in the journal.
        self.journal.write(record)
        delay = self.control.data_delay()
        if delay > 0:
            await asyncio.sleep(delay)
        return "250 2.0.0 Message accepted for delivery"


async def serve(arguments):
    control = Control(arguments.control)
    handler = Handler(control, Journal(arguments.journal))
    listening = socket.socket(fileno=os.dup(0))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink.test", enable_SMTPUTF8=True, timeout=60),
        sock=listening,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watchdog = asyncio.create_task(orphan_watchdog(stop))
    async with server:
        await stop.wait()
    watchdog.cancel()


async def orphan_watchdog(stop):
    """Stops the server once the test process that started it is gone (killed without
    running its destructors): a test server never outlives its test."""
    parent = os.getppid()
    while not stop.is_set():
        await asyncio.sleep(1)
        if os.getppid() != parent:
            stop.set()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--control", required=True)
    arguments = parser.parse_args()
    asyncio.run(serve(arguments))


if __name__ == "__main__":
    sys.exit(main())
