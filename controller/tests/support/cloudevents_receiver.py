"""A CloudEvents receiver for Rampart's notification tests, built on the CloudEvents Python SDK (PyPI `cloudevents`).

Every POST is parsed by the SDK (binary or structured content mode; the SDK validates the CloudEvents attributes),
then checked as a CDEvent of one of the types Rampart sends. Each accepted event is appended as one JSON line to
OUTFILE and answered 200; anything else is answered 400 and recorded as {"invalid": why}.

Usage: python cloudevents_receiver.py PORT OUTFILE
"""

import json
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

TYPES = {
    "dev.cdevents.service.deployed.0.2.0",
    "dev.cdevents.service.upgraded.0.2.0",
    "dev.cdevents.service.rolledback.0.2.0",
}
LOCK = threading.Lock()


def check(event):
    """Raises ValueError unless the CloudEvent carries a well-formed CDEvent of a type Rampart sends."""
    if event.get_specversion() != "1.0":
        raise ValueError(f"specversion {event.get_specversion()}")
    if event.get_type() not in TYPES:
        raise ValueError(f"unexpected type {event.get_type()}")
    data = event.get_data()
    if isinstance(data, (bytes, str)):
        data = json.loads(data)
    if not isinstance(data, dict):
        raise ValueError("data is not a JSON object")
    context, subject = data.get("context", {}), data.get("subject", {})
    for key, want in (("id", event.get_id()), ("type", event.get_type()), ("source", event.get_source())):
        if context.get(key) != want:
            raise ValueError(f"context.{key} {context.get(key)!r} differs from the CloudEvent's {want!r}")
    if context.get("version") != "0.4.1":
        raise ValueError(f"CDEvents version {context.get('version')!r}")
    datetime.fromisoformat(context["timestamp"].replace("Z", "+00:00"))
    content = subject.get("content", {})
    if subject.get("type") != "service" or not subject.get("id"):
        raise ValueError("subject is not a service with an id")
    if not content.get("environment", {}).get("id") or not str(content.get("artifactId", "")).startswith("pkg:"):
        raise ValueError("subject content lacks environment.id or a purl artifactId")
    rampart = data.get("customData", {}).get("rampart")
    if not isinstance(rampart, dict) or rampart.get("id") != event.get_id():
        raise ValueError("customData.rampart is missing or names another event")
    return data


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        mode = "binary" if any(k.startswith("ce-") for k in headers) else "structured"
        try:
            event = from_http(HTTPMessage(headers=headers, body=body), JSONFormat())
            data = check(event)
            record = {
                "id": event.get_id(),
                "type": event.get_type(),
                "source": event.get_source(),
                "subject": event.get_subject(),
                "time": event.get_time().isoformat() if event.get_time() else None,
                "mode": mode,
                "path": self.path,
                "data": data,
            }
            status = 200
        except Exception as err:  # every failure is recorded for the test to report
            record = {"invalid": f"{type(err).__name__}: {err}", "mode": mode, "path": self.path}
            status = 400
        with LOCK, open(sys.argv[2], "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()
