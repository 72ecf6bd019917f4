"""The built book as a reader meets it: every page opened in Debian's headless chromium.

The book in ``_build/html`` (built here when it is missing or older than its sources; CI's
``.ci/run`` builds it first) is served on localhost and crawled from its front page, following
every internal link, with the network closed (a reader on a train, or a CI runner offline). Each
page is checked once at desktop width and once at a phone's 390 px, and a screenshot of both is
written to ``_build/browser-screenshots/`` with ``report.json`` (what every check found). The tests
below then judge one aspect each over all pages, naming every page that fails.

Skipped only when ``chromium`` is not installed (``.ci/run`` installs Debian's ``chromium`` and
``chromium-driver``).
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import pytest
from helpers import book_links

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "browser-screenshots"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
# What a page's build depends on: a change to any of them makes _build/html stale.
SOURCES = ["_config.yml", "_toc.yml", "book/**/*.md", "book/**/*.bib", "book/_static/*", "book/book_fixes.py",
           "notebooks/*.ipynb", "notebooks/exercises/*.ipynb", "notebooks/figures/*",
           "qkvcourse/**/*.py"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="the browser test needs Debian's chromium: apt-get install chromium chromium-driver "
           "(.ci/run installs both)")


REPO = book_links().repository(ROOT)


def _newest(paths) -> float:
    return max((p.stat().st_mtime for p in paths), default=0.0)


def _build_is_stale() -> bool:
    if not (HTML / "index.html").exists():
        return True
    sources = [p for pattern in SOURCES for p in ROOT.glob(pattern) if p.is_file()]
    return _newest(sources) > _newest(HTML.rglob("*.html"))


@pytest.fixture(scope="module")
def book() -> Path:
    """``_build/html``, built (as ``make book`` does) when it is missing or older than a source."""
    if _build_is_stale():
        jupyter_book = Path(sys.executable).parent / "jupyter-book"
        proc = subprocess.run([str(jupyter_book), "build", ".", "--all", "--warningiserror", "--keep-going"],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, f"the book does not build:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return HTML


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(book):
    """The book served on localhost; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(book)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if CHROMEDRIVER is None:
        pytest.fail("chromium is installed but chromedriver is not: apt-get install chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--lang=en-US",
                # no network but localhost: what renders here renders offline
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Selenium Manager would try to download a driver: name Debian's explicitly.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


# Run in the page once it has loaded: waits for MathJax's first typeset and for every image.
SETTLE = """
const done = arguments[arguments.length - 1];
(async () => {
  const mathjax = document.querySelector('script[src*="mathjax"]');
  if (mathjax) {
    for (let i = 0; i < 400 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
      await new Promise(r => setTimeout(r, 50));
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  }
  const images = [...document.images];
  images.forEach(img => { img.loading = 'eager'; });
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  await document.fonts.ready;
  done(!!mathjax);
})().catch(e => done('error: ' + e));
"""

# What a page shows, gathered in the page.
INSPECT = """
const visible = el => el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true});
const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.classList.length ? '.' + [...el.classList].slice(0, 2).join('.') : '');
const report = {};
const math = [...document.querySelectorAll('span.math, div.math')];
report.math = math.length;
report.math_unrendered = math.filter(m => !m.querySelector('mjx-container'))
    .map(m => m.textContent.trim().slice(0, 80));
report.math_errors = [...document.querySelectorAll('mjx-merror')]
    .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80))
    // an undefined macro (a lost \\softmax, say) is typeset as its name in red, not as an error
    .concat([...document.querySelectorAll('mjx-assistive-mml mtext[mathcolor="red"]')]
    .map(e => 'undefined macro ' + e.textContent));
// raw TeX delimiters in the text a reader sees (code is allowed to contain them)
const raw = [];
const skip = 'script, style, pre, code, textarea, noscript, mjx-container, .highlight, kbd';
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const parent = node.parentElement;
  if (!parent || parent.closest(skip) || !visible(parent)) continue;
  const m = node.textContent.match(/\\\\\\(|\\\\\\[|\\$\\$/);
  if (m) raw.push(node.textContent.slice(Math.max(0, m.index - 30), m.index + 50).trim());
}
report.raw_tex = raw;
report.images = [...document.images].map(img => {
  const r = img.getBoundingClientRect();
  return {src: img.currentSrc || img.src, complete: img.complete, natural: img.naturalWidth,
          width: r.width, height: r.height, visible: visible(img)};
});
report.svgs = [...document.querySelectorAll('svg')].filter(visible).map(svg => {
  const r = svg.getBoundingClientRect();
  return {where: name(svg.parentElement), width: r.width, height: r.height};
});
report.links = [...document.querySelectorAll('a[href]')].map(a => ({
  href: a.href, raw: a.getAttribute('href'), title: a.getAttribute('title') || a.getAttribute('data-bs-original-title') || '',
  text: a.textContent.trim().slice(0, 60)}));
report.ids = [...document.querySelectorAll('[id]')].map(e => e.id)
    .concat([...document.querySelectorAll('a[name]')].map(a => a.name));
report.resources = performance.getEntriesByType('resource').map(e => e.name);
return report;
"""

# At the current width: does the page scroll sideways, and what sticks out? (the innermost
# elements whose box or text reaches past the right edge, outside any box that scrolls)
OVERFLOW = """
const root = document.documentElement, width = root.clientWidth;
const clipped = el => { for (let p = el.parentElement; p; p = p.parentElement)
    if (getComputedStyle(p).overflowX !== 'visible') return true;
  return false; };
const out = (el) => { const r = el.getBoundingClientRect();
  const reach = getComputedStyle(el).overflowX === 'visible' ? r.left + el.scrollWidth : r.right;
  return r.width > 0 && Math.max(r.right, reach) > width + 1 &&
         getComputedStyle(el).position !== 'fixed' && !clipped(el); };
const name = el => el.tagName.toLowerCase() + (typeof el.className === 'string' && el.className.trim() ?
    '.' + el.className.trim().split(/\\s+/).slice(0, 2).join('.') : '');
const culprits = [...document.body.querySelectorAll('*')].filter(el => out(el) && ![...el.children].some(out))
    .map(el => { const box = el.parentElement.closest('h1, h2, h3, h4, p, li, dt, td, table, div.math');
                 return (box ? name(box) + ' > ' : '') + name(el) + ' ' + Math.round(Math.max(
                     el.getBoundingClientRect().right, el.getBoundingClientRect().left + el.scrollWidth)) + 'px'; });
return {width: width, scroll_width: Math.max(root.scrollWidth, document.body.scrollWidth),
        sticking_out: culprits.slice(0, 5)};
"""


SCROLL_TO_MATH = """
const math = document.querySelector('div.math') || document.querySelector('span.math');
math.scrollIntoView({block: 'center'});
"""


def _wait_loaded(driver):
    for _ in range(200):
        if driver.execute_script("return document.readyState") == "complete":
            return
        time.sleep(0.05)


def _settle(driver) -> bool:
    result = driver.execute_async_script(SETTLE)
    assert not (isinstance(result, str) and result.startswith("error")), result
    return bool(result)


NO_TRANSITIONS = """
if (!document.getElementById('qkv-no-transitions')) {
  const s = document.createElement('style'); s.id = 'qkv-no-transitions';
  s.textContent = '*, *::before, *::after { transition: none !important; animation: none !important; }';
  document.head.appendChild(s);
}
"""


def _metrics(driver, metrics):
    # The theme slides its sidebars out when the width changes; without transitions the page is
    # measured and photographed in its final layout, not halfway through the animation.
    driver.execute_script(NO_TRANSITIONS)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.execute_script("return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _shot_name(rel: str) -> str:
    return rel.removesuffix(".html").replace("/", "__") + ".png"


def _page_of(url: str, base: str) -> str | None:
    """The built file a same-site URL names (``book/intro.html``), or None for another site."""
    if not url.startswith(base):
        return None
    path = unquote(urlsplit(url).path)[len(urlsplit(base).path):]
    return path + "index.html" if path == "" or path.endswith("/") else path


def _is_page(rel: str) -> bool:
    return rel.endswith(".html") and not rel.startswith(("_static/", "_sources/", "_images/"))


@pytest.fixture(scope="module")
def crawl(site, browser, book):
    """Every page reachable from the front page (plus Sphinx's index pages), opened once."""
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    (SHOTS / "desktop").mkdir(parents=True)
    (SHOTS / "phone").mkdir(parents=True)
    (SHOTS / "math").mkdir(parents=True)
    seeds = [p for p in ("index.html", "genindex.html", "py-modindex.html", "search.html", "_modules/index.html")
             if (book / p).exists()]
    queue, seen, pages = deque(seeds), set(seeds), {}
    started = time.time()
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)
    while queue:
        rel = queue.popleft()
        refresh = re.search(r'http-equiv="refresh" content="\d+; ?url=([^"]+)"',
                            (book / rel).read_text(encoding="utf-8"), re.I)
        if refresh:  # index.html sends the reader to the first page
            final = _page_of(urljoin(site + rel, refresh.group(1)), site)
            pages[rel] = {"redirects_to": final}
            if final not in seen:
                seen.add(final)
                queue.append(final)
            continue
        browser.get_log("browser")  # (the previous page's messages)
        browser.get(site + rel)
        _wait_loaded(browser)
        has_mathjax = _settle(browser)
        report = browser.execute_script(INSPECT)
        report["mathjax_loaded"] = has_mathjax
        report["console"] = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        browser.save_screenshot(str(SHOTS / "desktop" / _shot_name(rel)))
        if report["math"]:  # and one where the first equation is, to see it rendered
            browser.execute_script(SCROLL_TO_MATH)
            browser.save_screenshot(str(SHOTS / "math" / _shot_name(rel)))
            browser.execute_script("window.scrollTo(0, 0);")
        _metrics(browser, PHONE)
        report["phone"] = browser.execute_script(OVERFLOW)
        browser.save_screenshot(str(SHOTS / "phone" / _shot_name(rel)))
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)
        pages[rel] = report
        for link in report["links"]:
            target = _page_of(urldefrag(link["href"]).url, site)
            if target and _is_page(target) and target not in seen and (book / target).is_file():
                seen.add(target)
                queue.append(target)
    summary = {"pages": sum("redirects_to" not in r for r in pages.values()),
               "seconds": round(time.time() - started, 1)}
    (SHOTS / "report.json").write_text(json.dumps({"summary": summary, "pages": pages}, indent=1))
    return {"base": site, "pages": {k: v for k, v in pages.items() if "redirects_to" not in v}}


def _fail_if(problems: dict[str, list], what: str):
    problems = {page: found for page, found in problems.items() if found}
    if problems:
        count = sum(len(v) for v in problems.values())
        detail = "\n".join(f"  {page}: {found[:4]}" for page, found in sorted(problems.items()))
        pytest.fail(f"{what}: {count} on {len(problems)} page(s)\n{detail}")


def test_every_page_of_the_table_of_contents_is_reached(crawl):
    toc = re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())
    assert set(f"{entry}.html" for entry in toc) <= set(crawl["pages"])
    assert len(crawl["pages"]) >= len(toc) + 3


def test_math_renders(crawl):
    pages = crawl["pages"]
    with_math = [rel for rel, r in pages.items() if r["math"]]
    assert len(with_math) >= 10, "the chapters have math: the crawl found too little"
    _fail_if({rel: ([] if r["mathjax_loaded"] or not r["math"] else ["MathJax not loaded"])
              + [f"not typeset: {m}" for m in r["math_unrendered"]]
              + [f"MathJax error: {m}" for m in r["math_errors"]]
              + [f"raw TeX in the text: {m}" for m in r["raw_tex"]] for rel, r in pages.items()},
             "math that does not render")


def test_no_request_leaves_the_book(crawl):
    base = crawl["base"]
    _fail_if({rel: [u for u in r["resources"] if not u.startswith((base, "data:", "blob:"))]
              for rel, r in crawl["pages"].items()}, "requests to another host")


def test_images_and_svgs_load_with_a_size(crawl):
    def bad(image):
        return (not image["complete"] or image["natural"] == 0
                or (image["visible"] and (image["width"] == 0 or image["height"] == 0)))
    _fail_if({rel: [i["src"] for i in r["images"] if bad(i)] for rel, r in crawl["pages"].items()},
             "images that did not load or have no size")
    _fail_if({rel: [s["where"] for s in r["svgs"] if not (s["width"] and s["height"])]
              for rel, r in crawl["pages"].items()}, "inline SVGs with no size")
    figures = [i for r in crawl["pages"].values() for i in r["images"] if i["src"].endswith(".svg")]
    assert len(figures) >= 14, "the chapters' SVG diagrams were not found"


def test_internal_links_and_anchors_resolve(crawl):
    base, pages = crawl["base"], crawl["pages"]
    ids = {rel: set(r["ids"]) for rel, r in pages.items()}
    problems = {}
    for rel, report in pages.items():
        found = []
        for link in report["links"]:
            url, fragment = urldefrag(link["href"])
            target = _page_of(url, base)
            if target is None or link["raw"].startswith(("mailto:", "javascript:")):
                continue
            if not (HTML / target).is_file():
                found.append(f"{link['raw']} (no such file)")
            elif fragment and target in ids and unquote(fragment) not in ids[target]:
                found.append(f"{link['raw']} (no such anchor)")
        problems[rel] = found
    _fail_if(problems, "broken internal links")


def test_launch_and_repository_buttons_name_the_configured_repository(crawl):
    problems, notebooks = {}, 0
    for rel, report in crawl["pages"].items():
        found = []
        by_title = {}
        for link in report["links"]:
            by_title.setdefault(link["title"], []).append(link["href"])
        if by_title.get("Source repository") != [REPO.url]:
            found.append(f"repository button {by_title.get('Source repository')}")
        source = rel.removesuffix(".html") + ".ipynb"
        if (ROOT / source).is_file():
            notebooks += 1
            colab = REPO.colab_url(source)
            binder = f"https://mybinder.org/v2/gh/{REPO.url.removeprefix('https://github.com/')}/{REPO.branch}?urlpath=tree/{source}"
            if by_title.get("Launch on Colab") != [colab]:
                found.append(f"Colab launch button {by_title.get('Launch on Colab')}")
            if by_title.get("Launch on Binder") != [binder]:
                found.append(f"Binder launch button {by_title.get('Launch on Binder')}")
            in_text = [link["href"] for link in report["links"] if link["text"] == "Open in Colab"]
            if in_text != [colab]:
                found.append(f"'Open in Colab' link {in_text}")
        problems[rel] = found
    assert notebooks == 20, "ten chapters and ten graded sheets"
    _fail_if(problems, "launch or repository buttons that do not name the configured repository")


def test_browser_console_has_no_errors(crawl):
    _fail_if({rel: r["console"] for rel, r in crawl["pages"].items()}, "browser console errors")


def test_no_page_scrolls_sideways_on_a_phone(crawl):
    _fail_if({rel: ([f"{r['phone']['scroll_width']} px wide in {r['phone']['width']} px: "
                     f"{r['phone']['sticking_out']}"]
                    if r["phone"]["scroll_width"] > r["phone"]["width"] else [])
              for rel, r in crawl["pages"].items()}, "pages wider than a 390 px phone")


def test_search_finds_a_chapter(site, browser, crawl):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(site + "search.html?q=Nadaraya")
    found = WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "const r = [...document.querySelectorAll('#search-results li a')].map(a => a.href);"
        "return r.length ? r : null;"))
    assert any("notebooks/02_attention_pooling.html" in href for href in found), found
    browser.save_screenshot(str(SHOTS / "search.png"))


def test_light_and_dark_themes_render(site, browser, crawl):
    page = site + "notebooks/05_multihead_attention.html"
    backgrounds = {}
    for mode in ("light", "dark"):
        browser.get(page)
        browser.execute_script("localStorage.setItem('mode', arguments[0]);"
                               "localStorage.setItem('theme', arguments[0]);", mode)
        browser.refresh()
        _wait_loaded(browser)
        _settle(browser)
        theme, background, rendered = browser.execute_script(
            "return [document.documentElement.dataset.theme,"
            " getComputedStyle(document.body).backgroundColor,"
            " document.querySelectorAll('mjx-container').length];")
        browser.execute_script(SCROLL_TO_MATH)
        browser.save_screenshot(str(SHOTS / f"theme-{mode}.png"))
        assert theme == mode
        assert rendered > 0, f"no math rendered in the {mode} theme"
        rgb = [int(x) for x in re.findall(r"\d+", background)[:3]]
        backgrounds[mode] = sum(rgb) / 3
    browser.execute_script("localStorage.clear();")
    assert backgrounds["light"] > 200 and backgrounds["dark"] < 60, backgrounds
