"""A real SMTP server for the integration tests (aiosmtpd), started by tests/support/smtp.rs.

Listens on 127.0.0.1 with an OS-assigned port, prints `PORT <n>` once it accepts
connections, then one `MAIL <json>` line per accepted message: the envelope, the session
(TLS, login, connection number) and the message as Python's email parser reads it.
"""
import argparse
import asyncio
import hashlib
import json
import logging
import ssl
import sys
import warnings
from email import policy
from email.parser import BytesParser

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def addresses(message, name):
    header = message[name]
    if header is None:
        return []
    return [{"name": a.display_name, "address": a.addr_spec} for a in header.addresses]


def parse(raw):
    message = BytesParser(policy=policy.default).parsebytes(raw)
    headers = {}
    for key, value in message.items():
        headers.setdefault(key.lower(), []).append(str(value))
    parts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        entry = {
            "content_type": part.get_content_type(),
            "disposition": part.get_content_disposition(),
            "filename": part.get_filename(),
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        if part.get_content_maintype() == "text":
            entry["text"] = part.get_content()
        parts.append(entry)
    return {
        "subject": str(message["subject"] or ""),
        "from": addresses(message, "from"),
        "to": addresses(message, "to"),
        "cc": addresses(message, "cc"),
        "headers": headers,
        "parts": parts,
    }


class Handler:
    def __init__(self, args):
        self.refuse = set(args.refuse)
        self.defer = set(args.defer)
        self.reject_data = args.reject_data
        self.data_delay = args.data_delay
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address in self.defer:
            return f"450 4.2.1 <{address}>: Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.reject_data:
            return "554 5.7.1 Message rejected: looks like spam"
        self.count += 1
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "auth_login": login,
            "connection": server.connection_number,
            "size": len(envelope.original_content),
            "message": parse(envelope.original_content),
        }
        print("MAIL " + json.dumps(record), flush=True)
        if self.data_delay:
            # The message is in; the answer comes late (a slow or stalled server).
            await asyncio.sleep(self.data_delay)
        return f"250 2.0.0 Ok: queued as B24TEST{self.count}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["plain", "ssl", "starttls"], default="plain")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--login")
    p.add_argument("--password")
    p.add_argument("--refuse", action="append", default=[])
    p.add_argument("--defer", action="append", default=[])
    p.add_argument("--reject-data", action="store_true")
    p.add_argument("--data-delay", type=float, default=0.0)
    args = p.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    # AUTH over implicit TLS looks like AUTH without TLS to aiosmtpd.
    warnings.filterwarnings("ignore", category=UserWarning)

    context = None
    if args.mode != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.login
            and auth_data.password.decode() == args.password
        )
        # handled=False: aiosmtpd then answers 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    handler = Handler(args)
    connections = 0

    def factory():
        nonlocal connections
        connections += 1
        kwargs = dict(hostname="b24flow-test-smtp", enable_SMTPUTF8=True, data_size_limit=64 * 1024 * 1024)
        if args.login:
            kwargs.update(authenticator=authenticator, auth_required=True)
        if args.mode == "starttls":
            kwargs.update(tls_context=context, require_starttls=True, auth_require_tls=True)
        else:
            # aiosmtpd cannot tell implicit TLS from plain; the mode itself decides.
            kwargs.update(auth_require_tls=False)
        smtp = SMTP(handler, **kwargs)
        smtp.connection_number = connections
        return smtp

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory, host="127.0.0.1", port=0, ssl=context if args.mode == "ssl" else None
        )
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        # The test closes stdin (or dies): stop with it.
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
