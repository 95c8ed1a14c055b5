"""A real SMTP server for the e-mail transport's tests: aiosmtpd's SMTP protocol (RFC 5321, STARTTLS
per RFC 3207, AUTH PLAIN/LOGIN per RFC 4954) on loopback, saving every accepted message to a folder.

aiosmtpd's own command line (`python -m aiosmtpd`) has no option for AUTH, so this starts the same
SMTP class with an authenticator. Run by tools/smtp.ts with aiosmtpd on PYTHONPATH:

  python3 smtp_server.py --port P --dir D [--tlscert C --tlskey K] [--user U]   (password: $SMTP_PASSWORD)

Each message is saved as `<n>.eml` (the bytes received after DATA) with `<n>.json` beside it: the
envelope, what the session negotiated (`tls`, `authenticated`), and the message as Python's own
e-mail parser reads it (headers decoded, the text and HTML bodies). Recipients starting with
`tempfail` get `451` and with `reject` get `550`, so a test can meet both kinds of refusal.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import ssl
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class SaveToFolder:
    def __init__(self, folder: Path):
        self.folder = folder
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("tempfail"):
            return "451 4.3.0 Mailbox busy, try again later"
        if local.startswith("reject"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = self.folder / f"{self.count:05d}"
        content = envelope.original_content or b""
        meta = {
            "mailFrom": envelope.mail_from,
            "rcptTos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            **parse(content),
        }
        Path(f"{base}.eml.tmp").write_bytes(content)
        os.replace(f"{base}.eml.tmp", f"{base}.eml")
        # The JSON last: a reader that sees it finds the message complete.
        Path(f"{base}.json.tmp").write_text(json.dumps(meta))
        os.replace(f"{base}.json.tmp", f"{base}.json")
        return "250 Message accepted"


def parse(content: bytes) -> dict:
    msg = email.message_from_bytes(content, policy=email.policy.default)
    headers = {}
    for name, value in msg.items():
        headers.setdefault(name.lower(), []).append(str(value).strip())
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    return {
        "headers": headers,
        "contentType": msg.get_content_type(),
        "parts": [part.get_content_type() for part in msg.walk()],
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
    }


def authenticator_for(user: str, password: str):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    return authenticate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("--user")
    args = p.parse_args()

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    tls_context = None
    if args.tlscert and args.tlskey:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.tlscert, args.tlskey)

    kwargs = {}
    if args.user:
        kwargs = {
            "authenticator": authenticator_for(args.user, os.environ.get("SMTP_PASSWORD", "")),
            "auth_required": True,
            # Credentials only inside TLS when the server offers it (aiosmtpd's default).
            "auth_require_tls": tls_context is not None,
        }

    handler = SaveToFolder(folder)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(
                handler,
                hostname="smtp.test",
                tls_context=tls_context,
                require_starttls=tls_context is not None,
                **kwargs,
            ),
            host=args.host,
            port=args.port,
        )
    )
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    print(f"listening on {args.host}:{args.port}", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


if __name__ == "__main__":
    main()
