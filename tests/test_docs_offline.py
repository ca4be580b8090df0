"""/docs and /redoc in a real browser: the page renders and nothing reaches another site (offline classrooms).

ReDoc's bundle always tries to show the "API docs by Redocly" logo from a CDN; the Content-Security-Policy
header of the documentation pages (``atelier.api.openapi.DOCS_CSP``) makes the browser refuse that request
itself (Playwright reports the failure « csp ») : it never leaves the machine.
"""

from __future__ import annotations

import pytest

from tests.test_web_page import Visit, browser, images_dir, server  # noqa: F401 - the fixtures the server needs

# Slow: a real server and Chromium (left out by pytest -m "not slow").
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("page", "rendered"), [("docs", ".swagger-ui .info"), ("redoc", "h1")])
def test_documentation_pages_stay_on_this_server(browser, server, page, rendered):  # noqa: F811
    visit = Visit(browser, server.url)
    failures: dict[str, str] = {}
    visit.page.on("requestfailed", lambda request: failures.setdefault(request.url, request.failure or ""))
    try:
        visit.page.goto(f"{server.url}/{page}")
        visit.page.wait_for_selector(rendered)
        visit.page.wait_for_load_state("networkidle")
        assert "Atelier CNN" in visit.page.inner_text("body")
        elsewhere = [url for url in visit.requests if not url.startswith((server.url, "data:", "blob:"))]
        sent = [url for url in elsewhere if "csp" not in failures.get(url, "").lower()]  # "csp": refused by the browser
        assert sent == [], f"/{page} asked another site: {sent} ({failures})"
    finally:
        visit.close()
