"""The ingest floor: a bare Flask app that parses the JSON body and answers 202, nothing else.

Served like the bridge is (gunicorn), but with 2 sync workers:

    gunicorn --workers 2 --worker-class sync --chdir benchmarks bench.floor_app:app

It is what any Python web service on this machine can do at best with the same request; the bridge's ingest
rate is reported as a ratio of it.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/<path:_path>")
def receive(_path: str) -> tuple[Response, int]:
    body = request.get_json(force=True)  # parse, like every receiver does; a bad body answers 400
    event_id = body.get("id") if isinstance(body, dict) else None
    return jsonify({"alerts": [{"id": event_id}]}), 202


@app.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})
