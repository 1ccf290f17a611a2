"""Checks the built site as a reader's browser sees it, in headless Chromium, offline.

    python docs/check_site.py [docs/_build/html] [--screenshots docs/images]

* every internal link (``href``) and image (``src``) of every page resolves to a file of the site,
  and a link's ``#fragment`` to an element of its page;
* every page loads from a local HTTP server with no error in the browser's console;
* the explorer embedded in a tutorial (``iframe.jaxvae-explorer``) draws: its canvases hold pixels;
* search works from the built files: ``search.html?q=ELBO`` lists pages.

``--screenshots DIR`` also saves the home page, a tutorial with its plots and the API page of
``jaxvae.VAE`` there. Exit status 1 with one line per problem; 0 and a summary when all pass.
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import os
import shutil
import sys
import threading
import time
import urllib.parse

EXTERNAL = ("http:", "https:", "mailto:", "data:", "javascript:", "tel:")
# The site's pictures: a page, and the element scrolled to the top of the window (None: the page's top).
SCREENSHOTS = {
  "site_home.png": ("index.html", None),
  "site_tutorial.png": ("tutorials/p_and_q.html", ".cell_output img"),
  "site_api_vae.png": ("api/generated/jaxvae.VAE.html", None),
}


class _Page(html.parser.HTMLParser):
  """The ids, links and images of one HTML page."""

  def __init__(self):
    super().__init__()
    self.ids: set[str] = set()
    self.refs: list[tuple[str, str]] = []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    for key in ("id", "name"):
      if attrs.get(key):
        self.ids.add(attrs[key])
    if tag == "a" and attrs.get("href"):
      self.refs.append(("link", attrs["href"]))
    if tag in ("img", "script") and attrs.get("src"):
      self.refs.append(("image" if tag == "img" else "script", attrs["src"]))
    if tag == "link" and attrs.get("href") and attrs.get("rel") in ("stylesheet", "icon", "preload"):
      self.refs.append(("stylesheet", attrs["href"]))


@functools.cache
def _parse(path: str) -> _Page:
  page = _Page()
  with open(path, encoding="utf-8") as f:
    page.feed(f.read())
  return page


def pages_of(site: str) -> list[str]:
  """Every HTML page of the site, relative to its root."""
  found = []
  for root, _, files in os.walk(site):
    if os.path.relpath(root, site).split(os.sep)[0] in ("_static", "_sources", "_images"):
      continue  # the theme's templates and the pages' sources, not pages
    found += [os.path.relpath(os.path.join(root, f), site) for f in files if f.endswith(".html")]
  return sorted(found)


def link_problems(site: str, pages: list[str]) -> list[str]:
  """A line for each internal link or image that does not resolve."""
  problems = []
  for rel in pages:
    here = os.path.join(site, rel)
    for kind, ref in _parse(here).refs:
      if ref.startswith(EXTERNAL) or ref.startswith("//"):
        continue
      url = urllib.parse.urlsplit(ref)
      target = (
        os.path.normpath(os.path.join(os.path.dirname(here), urllib.parse.unquote(url.path))) if url.path else here
      )
      if os.path.isdir(target):
        target = os.path.join(target, "index.html")
      if not os.path.exists(target):
        problems.append(f"{rel}: {kind} {ref} does not resolve")
      elif url.fragment and target.endswith(".html") and url.fragment not in _parse(target).ids:
        problems.append(f"{rel}: link {ref}: no element #{url.fragment} in {os.path.relpath(target, site)}")
  return problems


def _serve(site: str) -> tuple[http.server.ThreadingHTTPServer, str]:
  handler = functools.partial(_QuietHandler, directory=site)
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  return server, f"http://127.0.0.1:{server.server_address[1]}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


def _browser():
  """Headless Chromium through the system's chromedriver (Debian: apt install chromium chromium-driver)."""
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service

  driver, browser = shutil.which("chromedriver"), shutil.which("chromium") or shutil.which("chromium-browser")
  if driver is None or browser is None:
    raise SystemExit("check_site: no Chromium and chromedriver here (Debian: apt install chromium chromium-driver)")
  options = webdriver.ChromeOptions()
  options.binary_location = browser
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
    options.add_argument(arg)
  options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  return webdriver.Chrome(service=Service(driver), options=options)


def _wait(driver, condition: str, seconds: float = 20.0):
  """Polls a JavaScript expression until it is truthy; its last value."""
  end = time.time() + seconds
  while True:
    value = driver.execute_script(f"return {condition};")
    if value or time.time() > end:
      return value
    time.sleep(0.2)


def _console_errors(driver) -> list[str]:
  return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


# A canvas has drawn when some pixel is not transparent.
_DRAWN = """
const canvases = Array.from(document.querySelectorAll('canvas'));
return canvases.length > 0 && canvases.filter(c => c.width > 0 && c.height > 0).every(c => {
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
  return false;
});
"""


def browser_problems(site: str, pages: list[str], screenshots: str | None) -> tuple[list[str], dict]:
  """A line for each page with a console error, an explorer that does not draw, or a search that finds nothing."""
  problems, seen = [], {"pages": 0, "explorers": 0, "search_results": 0}
  server, base = _serve(site)
  driver = _browser()
  try:
    for rel in pages:
      driver.get(base + rel)
      _wait(driver, "document.readyState === 'complete'")
      seen["pages"] += 1
      frames = driver.find_elements("css selector", "iframe.jaxvae-explorer")
      for i, frame in enumerate(frames):
        driver.switch_to.frame(frame)
        drawn = _wait(driver, f"(() => {{ {_DRAWN} }})()", 30)
        driver.switch_to.default_content()
        seen["explorers"] += 1
        if not drawn:
          problems.append(f"{rel}: the embedded explorer {i + 1} did not draw its canvases")
      problems += [f"{rel}: console error: {m}" for m in _console_errors(driver)]
    driver.get(base + "search.html?q=ELBO")
    found = _wait(driver, "document.querySelectorAll('#search-results li').length", 30)
    seen["search_results"] = found or 0
    if not found:
      problems.append("search.html?q=ELBO: the search found nothing")
    problems += [f"search.html: console error: {m}" for m in _console_errors(driver)]
    if screenshots:
      os.makedirs(screenshots, exist_ok=True)
      for name, (rel, element) in SCREENSHOTS.items():
        driver.get(base + rel)
        _wait(driver, "document.readyState === 'complete'")
        time.sleep(2)  # MathJax typesets after the load event
        if element:
          driver.execute_script(f"document.querySelector({element!r}).scrollIntoView({{block: 'center'}});")
          time.sleep(0.5)
        driver.save_screenshot(os.path.join(screenshots, name))
  finally:
    driver.quit()
    server.shutdown()
  return problems, seen


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("site", nargs="?", default=os.path.join(os.path.dirname(__file__), "_build", "html"))
  parser.add_argument("--screenshots", metavar="DIR", help="save the home page, a tutorial and jaxvae.VAE's page")
  args = parser.parse_args()
  if not os.path.exists(os.path.join(args.site, "index.html")):
    print(f"check_site: no built site in {args.site}: build it with `sphinx-build ... docs docs/_build/html`")
    return 2
  start = time.perf_counter()
  pages = pages_of(args.site)
  problems = link_problems(args.site, pages)
  more, seen = browser_problems(args.site, pages, args.screenshots)
  problems += more
  for line in problems:
    print(line)
  print(
    f"check_site: {len(pages)} pages, {seen['pages']} loaded in Chromium, {seen['explorers']} embedded explorer(s) "
    f"drawn, search for ELBO: {seen['search_results']} results; {len(problems)} problem(s) "
    f"in {time.perf_counter() - start:.0f} s"
  )
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
