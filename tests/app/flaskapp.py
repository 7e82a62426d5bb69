"""A Flask app for the WSGI tests: JSON, form posts, a file upload, streaming, an error."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request, stream_with_context
from flask.logging import default_handler

app = Flask(__name__)
# Flask adds its wsgi.errors handler only when no handler is configured; pytest configures
# one on the root logger, so add it explicitly (as under `reactor serve`).
app.logger.addHandler(default_handler)


@app.get("/api/items/<int:item_id>")
def item(item_id: int) -> Response:
    return jsonify(id=item_id, q=request.args.getlist("q"), scheme=request.scheme,
                   remote=request.remote_addr, host=request.host)


@app.post("/api/echo")
def echo_json() -> Response:
    return jsonify(got=request.get_json(), length=request.content_length)


@app.post("/form")
def form() -> Response:
    return jsonify(name=request.form["name"], langs=request.form.getlist("lang"))


@app.post("/upload")
def upload() -> Response:
    file = request.files["document"]
    data = file.read()
    return jsonify(filename=file.filename, size=len(data),
                   sha=hashlib.sha256(data).hexdigest(), note=request.form.get("note"))


@app.get("/stream/<int:count>")
def stream(count: int) -> Response:
    def lines() -> Iterator[str]:
        for index in range(count):
            yield f"line {index}\n"
    return Response(stream_with_context(lines()), mimetype="text/plain")


@app.get("/error")
def error() -> Response:
    raise RuntimeError("flask route exploded")
