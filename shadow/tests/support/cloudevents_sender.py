"""Sends KServe-logger-style inference events to rampart-shadow, encoded by the CloudEvents Python SDK (PyPI
`cloudevents`), so the test checks rampart-shadow against a CloudEvents implementation nobody here wrote.

For each of PAIRS request ids it sends the baseline's response in binary content mode and the candidate's in
structured content mode (every tenth candidate answer predicts another class), plus one request event. Ids contain
a space, which the SDK percent-encodes in binary mode. Prints one JSON line: what it sent.

Usage: python cloudevents_sender.py URL PAIRS
"""

import json
import sys
import urllib.request

from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

RESPONSE = "org.kubeflow.serving.inference.response"
REQUEST = "org.kubeflow.serving.inference.request"


def post(url, message):
    request = urllib.request.Request(url, data=message.body, headers=message.headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        if answer.status // 100 != 2:
            raise SystemExit(f"rampart-shadow answered {answer.status}")


def event(kind, request_id, endpoint, data):
    attributes = {
        "type": kind,
        "source": "http://fraud-predictor.ml.svc.cluster.local/",
        "id": request_id,
        "datacontenttype": "application/json",
        "inferenceservicename": "fraud",
        "namespace": "ml",
        "endpoint": endpoint,
        "component": "predictor",
    }
    return CloudEvent(attributes=attributes, data=data)


def main():
    url, pairs = sys.argv[1], int(sys.argv[2])
    fmt = JSONFormat()
    disagree = 0
    for i in range(pairs):
        request_id = f"req {i:05d}"
        post(url, to_binary(event(REQUEST, request_id, "default", {"instances": [[0.1, 0.2]]}), fmt))
        scores = [0.1, 0.7, 0.2]
        post(url, to_binary(event(RESPONSE, request_id, "default", {"predictions": [scores]}), fmt))
        if i % 10 == 0:
            scores = [0.6, 0.3, 0.1]
            disagree += 1
        post(url, to_structured(event(RESPONSE, request_id, "canary", {"predictions": [scores]}), fmt))
    print(json.dumps({"pairs": pairs, "disagree": disagree, "requests": pairs}))


if __name__ == "__main__":
    main()
