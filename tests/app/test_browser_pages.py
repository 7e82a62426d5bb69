"""A real browser against reactor's pages: headless Chromium (driven over the DevTools
protocol, as in test_websocket_browser) loads what a static root and a native app serve and
the test checks what the browser made of it. Skipped when chromium is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor import App, Request, Response
from tests.app.test_native import serve
from tests.app.test_websocket_browser import CHROMIUM, DevTools, browser  # noqa: F401
from tests.conftest import start_server

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (make test-tools installs it as root)")

XHTML = ('<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml">'
         "<head><title>x</title></head><body><p id='p'>an xhtml page</p></body></html>")


def test_an_xhtml_page_is_shown_not_downloaded(tmp_path: Path, browser: str) -> None:  # noqa: F811
    root = tmp_path / "www"
    root.mkdir()
    (root / "page.xhtml").write_text(XHTML)
    running = start_server(tmp_path, static={"root": str(root)})
    tools = DevTools(browser)
    try:
        navigated = tools.call("Page.navigate", url=f"{running.url}/page.xhtml")
        # as application/octet-stream it was saved: {"isDownload": true, "errorText": ...}
        assert navigated.get("isDownload") is False and "errorText" not in navigated
        assert tools.wait_for("document.getElementById('p')?.textContent") == "an xhtml page"
        assert tools.evaluate("document.contentType") == "application/xhtml+xml"
    finally:
        tools.ws.shutdown()
        running.stop()


def test_a_formdata_upload_from_chromium_keeps_its_names(tmp_path: Path,
                                                         browser: str) -> None:  # noqa: F811
    """FormData with a quote, CR and LF in a field name and a file name: Chromium sends them
    as %22, %0D, %0A; request.form() gives back what the page appended, bytes exact."""
    app = App()

    @app.post("/form")
    def form(request: Request) -> Response:
        data = request.form()
        files = [[name, upload.filename, upload.content_type, upload.read().hex()]
                 for name, upload in data.files.items()]
        return Response.json({"fields": data.items(), "files": files})

    running = serve(tmp_path, app)
    tools = DevTools(browser)
    try:
        tools.call("Page.navigate", url=f"{running.url}/")
        tools.wait_for("document.readyState === 'complete'")
        answer = tools.call("Runtime.evaluate", awaitPromise=True, returnByValue=True,
                            expression="""(async () => {
            const fd = new FormData();
            fd.append('say "hi"\\r\\nthere', 'v "1"');
            fd.append('doc', new File([new Uint8Array([0, 13, 10, 255])], 'my "best"\\nphoto.bin',
                                      {type: 'image/x-test'}));
            const r = await fetch('/form', {method: 'POST', body: fd});
            return [r.status, await r.json()]; })()""")["result"]["value"]
        assert answer == [200, {
            "fields": [['say "hi"\r\nthere', 'v "1"']],
            "files": [["doc", 'my "best"\nphoto.bin', "image/x-test", "000d0aff"]]}]
    finally:
        tools.ws.shutdown()
        running.stop()
