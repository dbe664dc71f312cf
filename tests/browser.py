"""Look at a rendered report the way a reader does: headless Chromium loads the page, a small script
checks every image decoded to a non-empty picture and that no cell shows a traceback, and a screenshot
is kept as a test artifact."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]

_PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 1 && i.naturalHeight > 1)).map(i => i.alt || i.src.slice(0, 40));
  const text = document.body.innerText;
  const result = {images: imgs.length, broken: broken, tracebacks: (text.match(/Traceback \\(most recent call last\\)/g) || []).length,
                  title: document.title, chars: text.length};
  const el = document.createElement('pre'); el.id = 'cpt-probe'; el.textContent = JSON.stringify(result);
  document.body.appendChild(el);
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def inspect_page(html_path: Path, screenshot: Path | None = None) -> dict:
    """Load ``html_path`` in headless Chromium; return image/traceback counts (and save a screenshot)."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("chromium not found: `make test` installs Debian's chromium where missing")
    with tempfile.TemporaryDirectory() as tmp:
        probe_page = Path(tmp) / html_path.name
        page = html_path.read_text(encoding="utf-8")
        probe_page.write_text(page.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
        base = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile", "--virtual-time-budget=15000"]
        dom = subprocess.run(base + ["--dump-dom", probe_page.as_uri()], capture_output=True, text=True, timeout=120).stdout
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(base + ["--window-size=1280,4000", f"--screenshot={screenshot}", html_path.as_uri()],
                           capture_output=True, timeout=120)
    match = re.search(r'<pre id="cpt-probe">(.*?)</pre>', dom, re.S)
    if not match:
        raise RuntimeError(f"the page did not finish loading in Chromium: {html_path}")
    import html as html_lib

    return json.loads(html_lib.unescape(match.group(1)))
