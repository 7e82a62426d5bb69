"""The trivial JSON route in Flask, served by reactor (--wsgi), waitress and gunicorn."""

from __future__ import annotations

from flask import Flask, Response, jsonify

app = Flask(__name__)


@app.get("/json")
def json_route() -> Response:
    return jsonify(message="Hello, World!")
