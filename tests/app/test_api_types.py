"""The native API as a type-checked app sees it: ordinary uses pass `mypy --strict` against
the package (it ships py.typed) with no `# type: ignore`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

APP = '''
from __future__ import annotations

from pathlib import Path

from reactor import App, Request, Response, UploadFile

app = App()
UPLOADS = Path("/srv/uploads")


@app.get("/search")
def search(request: Request) -> Response:
    query = request.query_params
    page: str = query.get("page", "1")
    size = int(query.get("size", 10))             # dict.get takes any default
    cursor: str | None = query.get("cursor", None)
    accept: str = request.headers.get("accept", "*/*")  # a default: never None
    raw: bytes = request.headers.get(b"accept", b"*/*")
    missing: str | None = request.headers.get("x-missing")
    upload: UploadFile | None = request.form().files.get("file", None)
    if upload is not None:
        upload.save(UPLOADS / "latest")             # a pathlib.Path, as open() takes
    return Response.json({"page": page, "size": size, "cursor": cursor, "accept": accept,
                          "raw": raw.decode("latin-1"), "missing": missing,
                          "upload": upload is None})
'''


def test_ordinary_accessor_uses_type_check_strictly(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    (tmp_path / "typed_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "mypy.ini").write_text(
        f"[mypy]\nmypy_path = {ROOT}\nfollow_imports = silent\npython_version = 3.11\n")
    stdout, stderr, status = api.run(
        ["--strict", "--config-file", str(tmp_path / "mypy.ini"), "--cache-dir",
         str(tmp_path / "cache"), "--no-error-summary", str(tmp_path / "typed_app.py")])
    assert (status, stdout, stderr) == (0, "", "")
