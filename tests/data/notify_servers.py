"""Local receivers for the notification tests, on 127.0.0.1 and a free port.

``SMTPServer``: a tiny SMTP server (stdlib sockets; ``smtpd`` is gone in Python 3.12) that speaks
enough of RFC 5321 for :mod:`smtplib` (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and keeps
each message. ``HTTPReceiver``: an :mod:`http.server` that records POSTed JSON bodies and
answers 500 to the first ``fail`` requests.
"""
from __future__ import annotations

import json
import socketserver
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _SMTPHandler(socketserver.StreamRequestHandler):
    def _say(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())

    def handle(self) -> None:
        self._say("220 localhost test SMTP")
        mail_from, rcpt = None, []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            cmd = raw.decode(errors="replace").strip()
            up = cmd.upper()
            if up.startswith("EHLO"):
                self._say("250-localhost")
                self._say("250 8BITMIME")
            elif up.startswith("HELO"):
                self._say("250 localhost")
            elif up.startswith("MAIL FROM:"):
                mail_from, rcpt = cmd[10:].strip(), []
                self._say("250 OK")
            elif up.startswith("RCPT TO:"):
                rcpt.append(cmd[8:].strip())
                self._say("250 OK")
            elif up == "DATA":
                self._say("354 end with <CRLF>.<CRLF>")
                lines = []
                while True:
                    line = self.rfile.readline()
                    if line in (b".\r\n", b".\n", b""):
                        break
                    lines.append(line[1:] if line.startswith(b"..") else line)
                self.server.messages.append(
                    {"from": mail_from, "to": rcpt,
                     "message": message_from_bytes(b"".join(lines))})
                self._say("250 OK queued")
            elif up in ("RSET", "NOOP"):
                self._say("250 OK")
            elif up == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("502 not implemented")


class SMTPServer(socketserver.ThreadingTCPServer):
    """``with SMTPServer() as s:`` -> ``s.port``, ``s.messages`` (dicts with an
    :class:`email.message.Message`)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _SMTPHandler)
        self.messages: list[dict] = []
        self.port = self.server_address[1]

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _HTTPHandler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv = self.server
        srv.requests.append({"path": self.path, "body": body,
                             "content_type": self.headers.get("Content-Type")})
        if srv.fail > 0:
            srv.fail -= 1
            self.send_response(500)
            self.end_headers()
            return
        reply = json.dumps(srv.reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class HTTPReceiver(ThreadingHTTPServer):
    """``with HTTPReceiver(fail=2) as h:`` -> ``h.url``, ``h.requests``, ``h.fail`` (how many
    more requests get a 500), ``h.reply`` (the JSON answered otherwise)."""

    daemon_threads = True

    def __init__(self, fail: int = 0):
        super().__init__(("127.0.0.1", 0), _HTTPHandler)
        self.fail = fail
        self.reply = {"errcode": 0, "errmsg": "ok"}
        self.requests: list[dict] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/cgi-bin/webhook/send"

    def payloads(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
