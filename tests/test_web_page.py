"""The chapter-5 web page (``GET /``) in a real browser: Debian Chromium driven by Playwright.

A real uvicorn server (``atelier.server.start_server``) runs ``create_app`` on the small test model
with a temporary history database; the page is loaded from it like a learner would.

Chromium must be installed at ``/usr/bin/chromium`` (``apt-get install -y chromium``; ``.ci/run`` does
it): Playwright's own browser download cannot work offline. Without it these tests fail, they do not
skip. ``ATELIER_CHROMIUM`` points to another executable.

Screenshots: every run writes a desktop and a phone-width screenshot in pytest's temporary folder;
``ATELIER_CAPTURES=<folder>`` also copies them there, and ``ATELIER_CAPTURE_DOCS=1`` writes the desktop one
to ``docs/capture-client-web.png`` (the README's picture). For that picture, ``ATELIER_WEB_MODEL=<.keras>``
serves a trained model instead of the untrained test one, and ``ATELIER_WEB_IMAGES=<folder>`` sends the
images of that folder (sorted by name) instead of synthetic ones::

    ATELIER_CAPTURE_DOCS=1 ATELIER_WEB_MODEL=modele.keras ATELIER_WEB_IMAGES=exemples/ \
        pytest tests/test_web_page.py -k screenshots
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import urllib.request
from pathlib import Path
from urllib.error import HTTPError

import pytest

from atelier.labels import CLASSES
from tests.conftest import CLASS_COLOURS, encode, textured_rgb

# Slow: a real browser (Chromium) against a real server (left out by pytest -m "not slow").
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("ATELIER_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
API_KEY = "cle-de-test-atelier"
XSS_NAME = "<img src=x onerror=alert(1)>.jpg"
TIMEOUT_MS = 15_000


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium est introuvable ({CHROMIUM}) : les tests de la page web en ont besoin. "
            "Installez-le avec « apt-get install -y chromium » (Debian/Ubuntu ; .ci/run le fait), ou "
            "indiquez un autre exécutable avec la variable ATELIER_CHROMIUM. "
            "« playwright install » ne fonctionne pas hors ligne.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _start(saved_model, tmp_path_factory, **options):
    from atelier.api import create_app
    from atelier.server import start_server

    db = tmp_path_factory.mktemp("historique-web") / "historique.sqlite3"
    model = os.environ.get("ATELIER_WEB_MODEL") or saved_model[0]
    return start_server(create_app(model, db_path=db, **options), port=None)


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("images-web")


@pytest.fixture(scope="module")
def server(saved_model, tmp_path_factory, images_dir):
    """The page's server keeps the images (serve --store-images): the feedback buttons need them."""
    with _start(saved_model, tmp_path_factory, store_images_dir=images_dir) as handle:
        yield handle


@pytest.fixture(scope="module")
def keyed_server(saved_model, tmp_path_factory):
    with _start(saved_model, tmp_path_factory, api_key=API_KEY) as handle:
        yield handle


class Visit:
    """A fresh browser context on one server, recording every request the page makes."""

    def __init__(self, browser, base_url: str, **context_options) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.context = browser.new_context(locale="fr-FR", **context_options)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page = self.context.new_page()
        self.page.on("dialog", self._on_dialog)
        # File-chooser interception is switched on asynchronously when the first listener is added:
        # adding one now, long before any key press, keeps expect_file_chooser() from racing it.
        self.file_choosers: list = []
        self.page.on("filechooser", lambda chooser: self.file_choosers.append(chooser))
        self.page.on("console", lambda msg: msg.type == "error" and self.console_errors.append(msg.text))
        self.page.on("pageerror", lambda exc: self.console_errors.append(f"pageerror: {exc}"))

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self):
        self.page.goto(self.base_url)
        self.page.wait_for_function(
            "() => !document.getElementById('historique-etat').textContent.startsWith('Chargement')"
        )
        return self.page

    def history_total(self) -> int:
        return int(self.page.get_attribute("#historique", "data-total") or 0)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser, server):
    opened = Visit(browser, server.url)
    yield opened
    opened.close()


def image_file(name: str = "foret.jpg", colour=(40, 110, 50), seed: int = 0, size: int = 64) -> dict:
    return {"name": name, "mimeType": "image/jpeg", "buffer": encode(textured_rgb(size, seed=seed, colour=colour))}


def predict(page, file: dict) -> None:
    """Choose ``file`` in the page's file input and wait for the answer (result or error)."""
    before = page.evaluate("document.getElementById('historique').dataset.total || '0'")
    page.set_input_files("#fichier", files=[file])
    page.wait_for_selector("#resultat[aria-busy='false']:not(:has(#attente:visible))")
    page.wait_for_selector("#prediction:visible, #erreur:visible")
    if page.is_visible("#prediction"):
        page.wait_for_function(
            "before => (document.getElementById('historique').dataset.total || '0') !== before", arg=before
        )


def api_error(base_url: str, body: bytes, filename: str) -> tuple[int, str]:
    """Send ``body`` to ``POST /predict`` directly and return the API's (status, detail)."""
    boundary = "----atelier-test"
    payload = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + body
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        base_url.rstrip("/") + "/predict",
        data=payload,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    try:
        urllib.request.urlopen(request, timeout=10)
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())["detail"]
    raise AssertionError("l'API aurait dû refuser ce fichier")


# ------------------------------------------------------------------------------------------- tests
def test_prediction_shows_french_label_and_four_sorted_bars(visit):
    page = visit.open()
    assert page.get_attribute("html", "lang") == "fr"
    assert "modèle" in page.inner_text("#version-modele")

    predict(page, image_file())

    label = page.get_attribute("#classe-nom", "data-label")
    assert label in CLASSES
    assert page.inner_text("#classe-nom").lower() == label
    bars = page.locator("#barres li")
    assert bars.count() == 4
    assert sorted(bars.evaluate_all("items => items.map(i => i.dataset.label)")) == sorted(CLASSES)
    values = [
        float(re.sub(r"[^\d,]", "", text).replace(",", "."))
        for text in page.locator("#barres .valeur").all_inner_texts()
    ]
    assert values == sorted(values, reverse=True), (
        "les barres doivent être triées de la plus probable à la moins probable"
    )
    assert abs(sum(values) - 100) < 0.5, values
    assert all(text.endswith("%") for text in page.locator("#barres .valeur").all_inner_texts())
    assert bars.first.get_attribute("data-label") == label
    # the model version comes from /health, and the result names it too
    version = page.inner_text("#version-modele").rsplit(" ", 1)[-1]
    assert version in page.inner_text("#prediction-info")
    assert page.is_hidden("#erreur")
    assert page.get_attribute("#resultat", "aria-live") == "polite"
    assert not visit.console_errors, visit.console_errors


def test_server_threshold_shows_je_ne_sais_pas(browser, saved_model, tmp_path_factory):
    """With create_app(uncertainty_threshold=...), the page shows the server's French « je ne sais pas »."""
    with _start(saved_model, tmp_path_factory, uncertainty_threshold=0.99) as strict:
        opened = Visit(browser, strict.url)
        try:
            page = opened.open()
            predict(page, image_file())
            text = page.inner_text("#confiance")
            assert "Je ne sais pas" in text and "99 %" in text.replace("\u202f", " ").replace("\u00a0", " ")
            assert page.get_attribute("#classe-nom", "data-label") in CLASSES
            assert not opened.console_errors, opened.console_errors
        finally:
            opened.close()


@pytest.mark.parametrize(
    ("name", "body"),
    [("notes.txt", b"Ceci n'est pas une image, juste du texte."), ("vide.jpg", b"")],
    ids=["texte", "vide"],
)
def test_refused_file_shows_the_api_french_error(visit, server, name, body):
    status, detail = api_error(server.url, body, name)
    assert 400 <= status < 500
    page = visit.open()
    predict(page, {"name": name, "mimeType": "text/plain", "buffer": body})
    assert page.is_visible("#erreur")
    assert page.inner_text("#erreur-detail") == detail
    assert page.get_attribute("#erreur", "role") == "alert"
    assert page.is_hidden("#prediction")


def test_history_grows_by_one_row_per_prediction(visit):
    page = visit.open()
    total = visit.history_total()
    predict(page, image_file("mer.jpg", CLASS_COLOURS["mer"], seed=1))
    assert visit.history_total() == total + 1
    first = page.locator("#historique-lignes tr").first
    assert first.locator("td").nth(1).inner_text() == "mer.jpg"

    # the second one by drag and drop onto the zone
    data_transfer = page.evaluate_handle(
        """(encoded) => {
            const dt = new DataTransfer();
            const bytes = new Uint8Array([...atob(encoded)].map(c => c.charCodeAt(0)));
            dt.items.add(new File([bytes], "desert-glisse.jpg", {type: "image/jpeg"}));
            return dt;
        }""",
        base64.b64encode(encode(textured_rgb(seed=2, colour=CLASS_COLOURS["désert"]))).decode(),
    )
    page.dispatch_event("#zone-depot", "drop", {"dataTransfer": data_transfer})
    page.wait_for_function("n => document.getElementById('historique').dataset.total === n", arg=str(total + 2))
    rows = page.locator("#historique-lignes tr")
    assert rows.count() == min(total + 2, 20)
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[1] == "desert-glisse.jpg"
    assert cells[2].lower() in CLASSES
    assert re.fullmatch(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}", cells[0]), cells[0]
    assert re.fullmatch(r"\d{1,3},\d %", cells[3].replace("\u202f", " ").replace("\xa0", " ")), cells[3]
    assert cells[4] == page.inner_text("#version-modele").rsplit(" ", 1)[-1]
    assert page.inner_text("#apercu-legende").startswith("desert-glisse.jpg")


def test_file_name_is_shown_as_text_never_as_html(visit):
    page = visit.open()
    predict(page, image_file(XSS_NAME))
    page.wait_for_timeout(200)  # an injected <img src=x> would fail to load and fire onerror by now
    assert visit.dialogs == [], "un nom de fichier a exécuté du JavaScript"
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("#historique-lignes tr").first.locator("td.fichier").inner_text() == XSS_NAME
    assert XSS_NAME in page.inner_text("#apercu-legende")
    assert XSS_NAME in page.inner_text("#prediction-info")


def test_page_makes_no_request_outside_its_origin(visit):
    page = visit.open()
    predict(page, image_file("foret.jpg"))
    page.click("#rafraichir")
    page.wait_for_load_state("networkidle")
    outside = [
        url for url in visit.requests if not (url.startswith(visit.base_url) or url.startswith(("data:", "blob:")))
    ]
    assert outside == [], f"requêtes hors de l'origine de la page : {outside}"
    html = (ROOT / "atelier" / "web" / "index.html").read_text(encoding="utf-8")
    for path in ("static/style.css", "static/app.js"):
        assert path in html
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html), "la page ne doit charger aucune ressource externe"


def test_keyboard_opens_the_file_chooser_with_visible_focus(visit):
    page = visit.open()
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "zone-depot":
            break
    assert page.evaluate("document.activeElement.id") == "zone-depot", "la zone de dépôt doit être atteignable avec Tab"
    outline = page.evaluate(
        "getComputedStyle(document.activeElement).outlineStyle + ' '"
        " + getComputedStyle(document.activeElement).outlineWidth"
    )
    assert not outline.startswith("none") and float(outline.split()[1].rstrip("px")) >= 2, outline
    assert page.get_attribute("#zone-depot", "role") == "button"
    assert page.locator("label[for='fichier']").count() == 1

    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(files=[image_file("clavier.jpg")])
    page.wait_for_selector("#prediction:visible")
    page.wait_for_function(
        "() => document.querySelector('#historique-lignes tr td.fichier')?.textContent === 'clavier.jpg'"
    )

    page.focus("#zone-depot")
    with page.expect_file_chooser():
        page.keyboard.press(" ")


def test_api_key_field_appears_after_401_and_then_the_page_works(browser, keyed_server):
    visit = Visit(browser, keyed_server.url)
    try:
        page = visit.open()  # GET /predictions answers 401: the page asks for the key
        assert page.is_visible("#form-cle")
        assert page.evaluate("document.activeElement.id") == "cle-api"
        assert page.get_attribute("#cle-api", "type") == "password"
        assert page.locator("label[for='cle-api']").count() == 1
        assert "modèle" in page.inner_text("#version-modele")  # /health stays open

        predict(page, image_file("protegee.jpg"))
        assert page.is_visible("#erreur")
        assert "Clé d'API manquante" in page.inner_text("#erreur-detail")

        page.fill("#cle-api", "mauvaise-cle")
        page.press("#cle-api", "Enter")
        page.wait_for_selector("#cle-message:has-text('invalide')")
        assert page.is_visible("#form-cle")
        assert page.is_hidden("#prediction")

        page.fill("#cle-api", API_KEY)
        page.click("#form-cle button[type=submit]")
        # the image refused for lack of a key is sent again with it
        page.wait_for_selector("#prediction:visible")
        assert page.is_hidden("#form-cle")
        assert page.get_attribute("#classe-nom", "data-label") in CLASSES
        page.wait_for_function("() => document.getElementById('historique').dataset.total === '1'")
        assert page.locator("#historique-lignes td.fichier").first.inner_text() == "protegee.jpg"
        assert page.evaluate("Object.values(sessionStorage)") == [API_KEY]
        assert page.evaluate("localStorage.length") == 0, "la clé ne doit pas être gardée au-delà de l'onglet"

        page.reload()  # same tab: the key is remembered
        page.wait_for_selector("#historique-lignes tr")
        assert page.is_hidden("#form-cle")
        predict(page, image_file("deuxieme.jpg", seed=3))
        assert visit.history_total() == 2
    finally:
        visit.close()


_CONTRAST_JS = """
() => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (node) => {
    for (let e = node; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c;
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const node of document.querySelectorAll("body *")) {
    if (node.closest("[aria-hidden='true'], .visuellement-cache, .lien-evitement")) continue;
    const text = [...node.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent.trim()).join("");
    if (!text || !node.checkVisibility()) continue;
    const [l1, l2] = [lum(parse(getComputedStyle(node).color)), lum(background(node))];
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    if (ratio < 4.5)
      low.push(`${node.tagName}#${node.id}.${node.className} « ${text.slice(0, 30)} » ${ratio.toFixed(2)}`);
  }
  return low;
}
"""

_OVERFLOW_JS = """
() => {
  const width = document.documentElement.clientWidth;
  const clipped = (e) => {  // visually hidden on purpose (screen-reader-only text, skip link)
    for (; e; e = e.parentElement)
      if (getComputedStyle(e).clipPath !== "none" || e.matches(".lien-evitement")) return true;
    return false;
  };
  const wide = [...document.querySelectorAll("body *")]
    .filter((e) => e.checkVisibility() && !clipped(e))
    .filter((e) => e.getBoundingClientRect().right > width + 1)
    .map((e) => `${e.tagName}#${e.id}.${e.className}`);
  return {scroll: document.documentElement.scrollWidth, width, wide};
}
"""


def _save(page, name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    captures = os.environ.get("ATELIER_CAPTURES")
    if captures:
        Path(captures).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(captures) / name)
    return path


#: The two screens of the layout tests and README screenshots: a desktop window and a phone.
_SCREENS = (
    ("bureau", {"viewport": {"width": 1280, "height": 900}}),
    (
        "telephone",
        {"viewport": {"width": 360, "height": 740}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True},
    ),
)


def _folder_images(folder: Path, suffixes: tuple[str, ...]) -> list[dict]:
    """The images of ``folder`` (ATELIER_WEB_IMAGES, for the README screenshots) as Playwright upload files."""
    return [
        {
            "name": path.name,
            "mimeType": "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png",
            "buffer": path.read_bytes(),
        }
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in suffixes
    ]


def test_layout_contrast_and_screenshots_at_desktop_and_phone_width(browser, server, tmp_path):
    files = [
        image_file("desert-sahara.jpg", CLASS_COLOURS["désert"], seed=11),
        image_file(
            "ocean-pacifique-vue-depuis-un-satellite-en-orbite-basse-tres-long-nom.jpg", CLASS_COLOURS["mer"], seed=12
        ),
        image_file("foret-amazonie.jpg", CLASS_COLOURS["forêt"], seed=13),
    ]
    if os.environ.get("ATELIER_WEB_IMAGES"):
        files = _folder_images(Path(os.environ["ATELIER_WEB_IMAGES"]), (".jpg", ".jpeg", ".png"))
    for screen, options in _SCREENS:
        name = f"{screen}.png"
        visit = Visit(browser, server.url, **options)
        try:
            page = visit.open()
            for file in files:
                predict(page, file)
            page.wait_for_timeout(500)  # bar and new-row animations
            low = page.evaluate(_CONTRAST_JS)
            assert low == [], f"contraste < 4,5:1 ({name}) : {low}"
            layout = page.evaluate(_OVERFLOW_JS)
            assert layout["scroll"] <= layout["width"], f"défilement horizontal ({name}) : {layout}"
            assert layout["wide"] == [], f"éléments qui dépassent ({name}) : {layout}"
            path = _save(page, name, tmp_path)
            if name == "bureau.png" and os.environ.get("ATELIER_CAPTURE_DOCS") == "1":
                shutil.copy(path, ROOT / "docs" / "capture-client-web.png")
        finally:
            visit.close()


# ------------------------------------------------------------------- heatmap, feedback and its filter
def _api_json(base_url: str, path: str) -> dict:
    with urllib.request.urlopen(base_url.rstrip("/") + path, timeout=10) as response:
        return json.loads(response.read())


def _shown_prediction(page) -> int:
    return int(page.get_attribute("#suite", "data-prediction"))


def test_heatmap_toggle_shows_the_overlay(visit):
    page = visit.open()
    assert page.is_hidden("#suite")
    predict(page, image_file("carte.jpg", CLASS_COLOURS["forêt"], seed=31))
    toggle = page.locator("#bascule-carte")
    assert toggle.get_attribute("aria-pressed") == "false" and page.is_hidden("#carte")
    toggle.focus()
    page.keyboard.press("Enter")  # reachable and usable from the keyboard
    page.wait_for_selector("#carte:visible")
    assert toggle.get_attribute("aria-pressed") == "true" and toggle.inner_text() == "Cacher la carte de chaleur"
    src = page.get_attribute("#carte-image", "src")
    assert src.startswith("data:image/png;base64,")
    assert page.evaluate("document.getElementById('carte-image').naturalWidth") == 256  # the overlay really loaded
    version = page.inner_text("#version-modele").rsplit(" ", 1)[-1]
    assert version in page.inner_text("#carte-legende") and "Grad-CAM" in page.inner_text("#carte-legende")
    assert page.get_attribute("#carte-etat", "aria-live") == "polite"
    assert page.get_attribute("#carte-image", "alt")
    toggle.click()
    assert page.is_hidden("#carte") and toggle.get_attribute("aria-pressed") == "false"
    toggle.click()  # shown again from the explanation already received: one POST /explain only
    page.wait_for_selector("#carte:visible")
    assert sum(url.endswith("/explain") for url in visit.requests) == 1
    assert not visit.console_errors, visit.console_errors


def test_feedback_buttons_store_right_and_wrong(visit, server):
    page = visit.open()
    predict(page, image_file("juste.jpg", seed=32))
    right_id, predicted = _shown_prediction(page), page.get_attribute("#classe-nom", "data-label")
    page.click("#retour-juste")
    page.wait_for_selector("#retour-etat:has-text('juste')")
    assert page.get_attribute("#retour-juste", "aria-pressed") == "true"
    page.wait_for_selector(f"#historique-lignes tr[data-id='{right_id}'] td[data-feedback='right']")
    assert "juste" in page.inner_text(f"#historique-lignes tr[data-id='{right_id}'] td[data-feedback]")

    predict(page, image_file("faux.jpg", seed=33))
    wrong_id, predicted = _shown_prediction(page), page.get_attribute("#classe-nom", "data-label")
    options = page.locator("#retour-classe option").evaluate_all("o => o.map(x => x.value)")
    assert sorted(options) == sorted(c for c in CLASSES if c != predicted)  # the predicted class is not offered
    truth = options[-1]
    page.select_option("#retour-classe", truth)
    name = page.inner_text("#retour-classe option:checked")
    assert page.inner_text("#retour-faux").replace("\xa0", " ") == f"C'est faux : c'était {name}"
    page.click("#retour-faux")
    page.wait_for_selector(f"#historique-lignes tr[data-id='{wrong_id}'] td[data-feedback='wrong']")
    assert name in page.inner_text(f"#historique-lignes tr[data-id='{wrong_id}'] td[data-feedback]")
    assert name in page.inner_text("#retour-etat") and page.get_attribute("#retour-etat", "aria-live") == "polite"
    # What the API stored.
    wrong = {i["id"]: i for i in _api_json(server.url, "/predictions?feedback=wrong&limit=500")["items"]}
    right = {i["id"]: i for i in _api_json(server.url, "/predictions?feedback=right&limit=500")["items"]}
    assert wrong[wrong_id]["feedback_label"] == truth and right_id in right and wrong_id not in right
    assert page.is_hidden("#retour-impossible")
    assert not visit.console_errors, visit.console_errors


def test_no_feedback_buttons_when_the_server_keeps_no_image(browser, saved_model, tmp_path_factory):
    """Without --store-images the API refuses every feedback (409): the page does not offer the buttons."""
    with _start(saved_model, tmp_path_factory) as plain:
        visit = Visit(browser, plain.url)
        try:
            page = visit.open()
            predict(page, image_file("sans-images.jpg", seed=36))
            assert page.is_visible("#bascule-carte")  # POST /explain needs no stored image
            assert page.is_hidden("#retour") and page.is_hidden("#retour-juste") and page.is_hidden("#retour-faux")
            notice = page.inner_text("#retour-impossible")
            assert page.is_visible("#retour-impossible") and "--store-images DOSSIER" in notice, notice
            page.click("#bascule-carte")
            page.wait_for_selector("#carte:visible")
            assert not any("/feedback" in url for url in visit.requests)
            assert not visit.console_errors, visit.console_errors
        finally:
            visit.close()


def test_a_refused_feedback_shows_the_french_409(visit, server, images_dir):
    """The image erased after the answer (retention): the click gets the API's French 409, shown as it is."""
    page = visit.open()
    predict(page, image_file("effacee.jpg", seed=37))
    shown = _shown_prediction(page)
    row = next(i for i in _api_json(server.url, "/predictions?limit=20")["items"] if i["id"] == shown)
    for path in images_dir.glob(f"{row['image_sha256']}.*"):
        path.unlink()
    page.click("#retour-juste")
    page.wait_for_selector("#retour-etat:has-text('Retour non enregistré')")
    state = page.inner_text("#retour-etat")
    assert f"prédiction {shown} n'est pas gardée" in state and "POST /predict" in state, state
    assert page.is_disabled("#retour-juste") and page.is_disabled("#retour-faux")  # sending again cannot work
    assert page.get_attribute("#retour-juste", "aria-pressed") == "false"
    assert _api_json(server.url, "/predictions?feedback=none&limit=20")["items"][0]["id"] == shown


def test_history_filter_on_feedback(visit, server):
    page = visit.open()
    predict(page, image_file("sans-retour.jpg", seed=34))
    predict(page, image_file("a-corriger.jpg", seed=35))
    page.select_option("#retour-classe", index=0)
    page.click("#retour-faux")
    page.wait_for_selector("#retour-etat:has-text('Correction enregistrée')")
    for value in ("wrong", "right", "none"):
        page.select_option("#filtre-retour", value)
        page.wait_for_selector(f"#historique[data-filter='{value}']")
        expected = _api_json(server.url, f"/predictions?feedback={value}&limit=20")
        assert visit.history_total() == expected["total"] > 0, value
        marks = page.locator("#historique-lignes td[data-feedback]").evaluate_all("c => c.map(x => x.dataset.feedback)")
        assert marks == [value] * len(expected["items"]), value
        ids = page.locator("#historique-lignes tr").evaluate_all("r => r.map(x => Number(x.dataset.id))")
        assert ids == [i["id"] for i in expected["items"]], value
    assert page.locator("label[for='filtre-retour']").count() == 1
    page.select_option("#filtre-retour", "")
    page.wait_for_selector("#historique[data-filter='']")
    assert visit.history_total() == _api_json(server.url, "/predictions?limit=1")["total"]


def test_explanation_and_feedback_layout_and_screenshots(browser, server, tmp_path):
    """With the heatmap shown and a confirmation sent: contrast, no overflow at phone width, screenshots."""
    tiles = os.environ.get("ATELIER_WEB_IMAGES")
    files = [image_file("foret-amazonie.jpg", CLASS_COLOURS["forêt"], seed=41)]
    if tiles:
        files = _folder_images(Path(tiles), (".jpg", ".jpeg"))
    for screen, options in _SCREENS:
        name = f"explication-{screen}.png"
        visit = Visit(browser, server.url, **options)
        try:
            page = visit.open()
            for file in files:
                predict(page, file)
            page.click("#retour-juste")
            page.wait_for_selector("#retour-etat:has-text('Merci')")
            page.click("#bascule-carte")
            page.wait_for_selector("#carte:visible")
            page.wait_for_function("() => document.getElementById('carte-image').complete")
            page.wait_for_timeout(500)  # bar and new-row animations
            low = page.evaluate(_CONTRAST_JS)
            assert low == [], f"contraste < 4,5:1 ({name}) : {low}"
            layout = page.evaluate(_OVERFLOW_JS)
            assert layout["scroll"] <= layout["width"], f"défilement horizontal ({name}) : {layout}"
            assert layout["wide"] == [], f"éléments qui dépassent ({name}) : {layout}"
            path = _save(page, name, tmp_path)
            if os.environ.get("ATELIER_CAPTURE_DOCS") == "1":
                shutil.copy(path, ROOT / "docs" / f"capture-{name}")
        finally:
            visit.close()
