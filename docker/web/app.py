#!/usr/bin/python3
"""Demo web app: answers every GET with its node name and address, as JSON.
GET /healthz answers "ok" (HAProxy's health check)."""
import json, os, socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = os.environ.get("NODE_NAME") or socket.gethostname()
IP = os.environ.get("NODE_IP") or socket.gethostbyname(socket.gethostname())
PORT = int(os.environ.get("WEB_PORT", "3000"))
BODY = json.dumps({"hello": "world", "host": NAME, "ip": IP}).encode()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive

    def do_GET(self):
        body = b"ok\n" if self.path == "/healthz" else BODY
        self.send_response(200)
        self.send_header("Content-Type", "text/plain" if self.path == "/healthz" else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass

ThreadingHTTPServer.daemon_threads = True
print(f"web: {NAME} ({IP}) listening on :{PORT}", file=sys.stderr, flush=True)
ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
