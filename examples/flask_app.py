"""A Flask app hosted by reactor as any WSGI app.

Serve it from the repository root with:

    reactor serve --app-dir examples --wsgi flask_app:app
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.get("/")
def index() -> Response:
    return jsonify(message="hello from Flask on reactor", scheme=request.scheme)


@app.post("/echo")
def echo() -> Response:
    return jsonify(json=request.get_json(silent=True), form=request.form.to_dict())


@app.get("/count/<int:n>")
def count(n: int) -> Response:
    def numbers() -> Iterator[str]:
        for i in range(n):
            yield f"{i}\n"
    return Response(numbers(), mimetype="text/plain")  # streamed, chunk by chunk
