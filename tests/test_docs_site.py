"""The built documentation site: local links resolve, and pages render in a real browser.

These tests read the HTML that ``python -m sphinx -b html docs docs/_build/html`` built
(or ``SKENSEMBLE_DOCS_HTML``). Without a build, or without Chromium for the screenshot
test, they are skipped, unless ``SKENSEMBLE_REQUIRE_DOCS_SITE=1`` (CI sets it after
building the site), which turns every such skip into a failure.
"""

import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("SKENSEMBLE_DOCS_HTML", ROOT / "docs" / "_build" / "html"))
REQUIRED = os.environ.get("SKENSEMBLE_REQUIRE_DOCS_SITE") == "1"

# The three pages the screenshot test looks at (front, API, one gallery page), and the
# page with display math.
PAGES = {
    "front": "index.html",
    "api": "generated/skensemble.NeuralBaggingRegressor.html",
    "gallery": "auto_examples/plot_uncertainty.html",
    "math": "user_guide/accuracy.html",
}
# What a page shows when MathJax (or any math renderer) did not run: TeX commands or
# math delimiters in the visible text.
RAW_LATEX = re.compile(r"\\(frac|sqrt|mapsto|left|right|mathrm|sum|int|alpha|beta|cdot)\b"
                       r"|\$\$|\\\(|\\\[")


def skip_or_fail(reason):
    if REQUIRED:
        pytest.fail(f"{reason} (SKENSEMBLE_REQUIRE_DOCS_SITE=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").is_file():
        skip_or_fail(f"no built documentation in {HTML}")
    return HTML


class _Page(HTMLParser):
    """Links, ids, images and the visible text of one HTML page."""

    HIDDEN = {"script", "style", "svg", "noscript", "template"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self.ids, self.images, self.text = [], set(), [], []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "link" and attrs.get("href") and attrs.get("rel") == "stylesheet":
            self.links.append(attrs["href"])
        if tag in self.HIDDEN:
            self._hidden += 1

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self._hidden = max(0, self._hidden - 1)

    def handle_data(self, data):
        if not self._hidden:
            self.text.append(data)


def parse(html):
    page = _Page()
    page.feed(html)
    page.visible = " ".join(" ".join(page.text).split())
    return page


def test_readme_links_and_pictures_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t for t in targets if not re.match(r"^[a-z]+:", t)]
    assert local, "the README links to nothing in the repository"
    missing = [t for t in local if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_api_page_lists_every_parameter():
    """docs/api.rst's table names every parameter of both estimators (or their page does)."""
    import inspect

    import skensemble

    text = (ROOT / "docs" / "api.rst").read_text(encoding="utf-8")
    table = text[text.index("Parameters at a glance"):text.index("Version\n=======")]
    named = set(re.findall(r"``(\w+)``", table))
    for cls in (skensemble.NeuralBaggingRegressor, skensemble.NeuralBaggingClassifier):
        missing = set(inspect.signature(cls).parameters) - named
        assert not missing, f"docs/api.rst does not name {sorted(missing)} of {cls.__name__}"


def test_local_links_resolve(site):
    """Every local link and image of every page names an existing file (and anchor)."""
    pages = {p: parse(p.read_text(encoding="utf-8")) for p in site.rglob("*.html")
             if "_static" not in p.parts and "_sources" not in p.parts}
    broken = []
    for path, page in pages.items():
        for target in page.links + page.images:
            parts = urlsplit(target)
            if parts.scheme or target.startswith(("//", "mailto:", "javascript:")):
                continue
            file = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not file.exists():
                broken.append(f"{path.relative_to(site)}: {target} (no such file)")
            elif parts.fragment and file.suffix == ".html" and file in pages and \
                    unquote(parts.fragment) not in pages[file].ids:
                broken.append(f"{path.relative_to(site)}: {target} (no such anchor)")
    assert not broken, "\n".join(broken[:30])


def test_gallery_has_no_temporary_paths_and_real_thumbnails(site):
    temp = {tempfile.gettempdir(), "/tmp/", "skensemble-docs-gallery"}
    for page in (site / "auto_examples").glob("*.html"):
        text = page.read_text(encoding="utf-8")
        shown = [t for t in temp if t in text]
        assert not shown, f"{page.name} shows a temporary path: {shown}"
    index = parse((site / "auto_examples" / "index.html").read_text(encoding="utf-8"))
    thumbs = [src for src in index.images if "_thumb" in src or "no_image" in src]
    examples = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))
    assert len(thumbs) == len(examples), thumbs
    # sphinx-gallery copies its placeholder picture into the card of an example that was
    # not run and names no sphinx_gallery_thumbnail_path: compare the pictures themselves.
    sphinx_gallery = pytest.importorskip("sphinx_gallery")
    pytest.importorskip("PIL")
    from PIL import Image, ImageChops, ImageStat

    placeholder = Image.open(Path(sphinx_gallery.__file__).parent / "_static" / "no_image.png")
    placeholders = []
    for src in thumbs:
        thumb = Image.open(site / "auto_examples" / src).convert("RGB")
        diff = ImageChops.difference(thumb, placeholder.convert("RGB").resize(thumb.size))
        if "no_image" in src or max(ImageStat.Stat(diff).mean) < 5:
            placeholders.append(src)
    assert not placeholders, (f"gallery cards that show the placeholder: {placeholders}; name a "
                              "picture with '# sphinx_gallery_thumbnail_path = ...' in the example")


def test_math_is_rendered_at_build_time(site):
    html = (site / PAGES["math"]).read_text(encoding="utf-8")
    assert "math-svg-block" in html and "<svg" in html
    assert "mathjax" not in html.lower(), "the page loads MathJax (a CDN, offline: raw LaTeX)"
    assert not RAW_LATEX.search(parse(html).visible)


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_renders_in_a_browser(site, name, tmp_path):
    """A headless browser draws the page: not empty, no raw LaTeX."""
    browser = chromium()
    if browser is None:
        skip_or_fail("no Chromium to render the pages with")
    pytest.importorskip("PIL")
    from PIL import Image

    url = (site / PAGES[name]).resolve().as_uri()
    # --no-sandbox: CI runs as root; --disable-dev-shm-usage: containers with a small /dev/shm
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--hide-scrollbars", "--no-first-run", "--disable-extensions",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600",
             "--virtual-time-budget=3000"]
    shot = tmp_path / f"{name}.png"
    run = dict(capture_output=True, text=True, timeout=120)
    subprocess.run([*flags, f"--screenshot={shot}", url], check=True, **run)
    dom = subprocess.run([*flags, "--dump-dom", url], check=True, **run).stdout

    page = parse(dom)
    main = re.search(r'<article class="bd-article[^>]*>(.*?)</article>', dom, flags=re.S)
    assert main, f"{PAGES[name]}: no article in the rendered page"
    assert len(parse(main.group(1)).visible) > 300, f"{PAGES[name]} renders (almost) empty"
    raw = RAW_LATEX.search(page.visible)
    assert not raw, f"{PAGES[name]} shows raw LaTeX: {page.visible[raw.start() - 40:raw.end() + 40]!r}"

    image = Image.open(shot).convert("L")
    histogram = image.histogram()
    ink = sum(histogram[:200]) / (image.width * image.height)
    assert ink > 0.01, f"{PAGES[name]}: the screenshot is blank ({ink:.2%} of pixels drawn)"
    if name == "math":
        assert "math-svg-block" in dom
    if name == "gallery":
        assert "saved uncertainty.png" in page.visible
