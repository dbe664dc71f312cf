"""Look at a rendered report the way a reader does: headless Chromium loads the page at a given window
width, a small script measures what a reader would see, and a screenshot is kept as a test artifact.

The probe returns, for that width:

- ``viewport``: the layout width the page actually got (the check of the check: it must equal the width);
- ``page_overflow``: the page itself scrolls sideways (``documentElement.scrollWidth > clientWidth``);
- ``wide``: every box that needs a horizontal scroll bar (any element whose computed ``overflow-x`` is
  auto/scroll with ``scrollWidth > clientWidth + 1``), every table whose content is wider than the table,
  and every table or ``pre`` wider than the (non-scrolling) box it sits in;
- ``missing``: table cells whose whole text is ``NaN``, ``nan``, ``None`` or ``<NA>``;
- ``stderr``: stderr output blocks (nbconvert's ``data-mime-type="application/vnd.jupyter.stderr"``), less
  ``errors``: the error outputs nbconvert styles the same way (``cpt-error``, or a shown traceback);
- ``broken``: images that did not decode, and inline SVGs that are shown with zero size or are empty;
- ``figures``: decoded images and inline SVGs wider than 50 px;
- ``column``: the width of the content column (``main``, else ``body``);
- ``images``, ``tracebacks``, ``title``, ``chars``, ``height``.

Each element is named by a short CSS path, the notebook cell or heading it sits under, and its first text.
"""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
MAX_SCREENSHOT_HEIGHT = 16_000

_PROBE = r"""<script>
window.addEventListener('load', () => {
  const de = document.documentElement;
  const short = (s, n) => (s || '').replace(/\s+/g, ' ').trim().slice(0, n);
  const step = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id.slice(0, 24)
                     : (el.classList.length ? '.' + el.classList[0] : ''));
  const where = el => {
    const cell = el.closest('.jp-Cell');
    if (cell) {
      const cells = Array.from(document.querySelectorAll('.jp-Cell'));
      return 'cell ' + (cells.indexOf(cell) + 1);
    }
    let node = el;
    for (let hops = 0; node && node !== document.body && hops < 200; hops++) {
      let sib = node.previousElementSibling;
      while (sib) {
        if (/^H[1-4]$/.test(sib.tagName)) return 'under "' + short(sib.textContent, 50) + '"';
        sib = sib.previousElementSibling;
      }
      node = node.parentElement;
    }
    return 'top of page';
  };
  const name = el => {
    const path = [];
    for (let n = el; n && n !== document.body && path.length < 4; n = n.parentElement) path.unshift(step(n));
    return {path: path.join(' > '), where: where(el), text: short(el.innerText || el.textContent, 60)};
  };
  const cellAt = c => {  // 'in column "p (vs base)", row "val_domain loss"'
    const table = c.closest('table'), row = c.parentElement;
    const heads = table && table.tHead ? Array.from(table.tHead.rows).reverse()  // pandas: the last named header row
      .map(r => r.cells[c.cellIndex]).filter(h => h && h.textContent.trim()) : [];
    const column = heads.length ? short(heads[0].textContent, 40) : 'column ' + (c.cellIndex + 1);
    const first = Array.from(row.cells).find(x => x !== c && x.textContent.trim() && !/^\d+$/.test(x.textContent.trim()));
    return `in column "${column}", row "${first ? short(first.textContent, 40) : row.rowIndex}"`;
  };
  const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  const shown = el => el.getClientRects().length > 0;
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    if (el.id === 'cpt-probe' || !shown(el)) continue;
    if (scrolls(el) && el.scrollWidth > el.clientWidth + 1) {
      wide.push({...name(el), why: `scroll box: content ${el.scrollWidth}px in ${el.clientWidth}px`});
    } else if (el.tagName === 'TABLE' && el.scrollWidth > el.clientWidth + 1) {
      wide.push({...name(el), why: `table content ${el.scrollWidth}px in a ${el.clientWidth}px table`});
    } else if (['TABLE', 'PRE'].includes(el.tagName) && el.parentElement && !scrolls(el.parentElement)) {
      const box = el.parentElement, own = el.getBoundingClientRect().right, room = box.getBoundingClientRect().right;
      if (own > room + 1 && box !== document.body)
        wide.push({...name(el), why: `${el.tagName.toLowerCase()} ends ${Math.round(own - room)}px past its box`});
      else if (own > de.clientWidth + 1)
        wide.push({...name(el), why: `${el.tagName.toLowerCase()} ends ${Math.round(own - de.clientWidth)}px past the window`});
    }
  }
  const missing = Array.from(document.querySelectorAll('td, th'))
    .filter(c => ['NaN', 'nan', 'None', '<NA>'].includes(c.textContent.trim()))
    .map(c => ({...name(c), why: 'cell shows ' + c.textContent.trim() + ' ' + cellAt(c)}));
  // nbconvert styles errors as stderr too: cpt's renderer marks them .cpt-error (older pages: a traceback)
  const isError = el => el.classList.contains('cpt-error') || /Traceback \(most recent call last\)/.test(el.textContent);
  const stderrLike = Array.from(document.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]'));
  const stderr = stderrLike.filter(el => !isError(el)).map(el => ({...name(el), why: 'stderr output'}));
  const errors = stderrLike.filter(isError).map(el => ({...name(el), why: 'error output'}));
  const imgs = Array.from(document.images);
  const decoded = i => i.complete && i.naturalWidth > 1 && i.naturalHeight > 1;
  const svgs = Array.from(document.querySelectorAll('svg')).filter(s => !s.parentElement.closest('svg'));
  const svgWidth = s => { const r = s.getBoundingClientRect(); let w = r.width;
    try { w = Math.max(w, s.width.baseVal.value); } catch (e) {} return w; };
  const badSvg = s => s.childElementCount === 0 || (shown(s) && (s.getBoundingClientRect().width < 1 || s.getBoundingClientRect().height < 1));
  const broken = imgs.filter(i => !decoded(i)).map(i => i.alt || i.src.slice(0, 40))
    .concat(svgs.filter(badSvg).map(s => 'svg ' + name(s).path));
  const figures = imgs.filter(i => decoded(i) && i.naturalWidth > 50).length
    + svgs.filter(s => !badSvg(s) && svgWidth(s) > 50).length;
  const text = document.body.innerText;
  const result = {viewport: window.innerWidth, page_overflow: de.scrollWidth > de.clientWidth,
                  scroll_width: de.scrollWidth, client_width: de.clientWidth, wide, missing, stderr, errors, broken, figures,
                  images: imgs.length, tracebacks: (text.match(/Traceback \(most recent call last\)/g) || []).length,
                  title: document.title, chars: text.length, height: de.scrollHeight,
                  column: Math.round((document.querySelector('main') || document.body).getBoundingClientRect().width)};
  if (window.parent !== window) { window.parent.postMessage(JSON.stringify(result), '*'); return; }
  const el = document.createElement('pre'); el.id = 'cpt-probe'; el.style.display = 'none';
  el.textContent = JSON.stringify(result);
  document.body.appendChild(el);
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


_FRAME = """<!doctype html><html><body style="margin:0">
<iframe id="cpt-frame" src="{src}" style="border:0;display:block;width:{width}px;height:{height}px"></iframe>
<script>window.addEventListener('message', e => {{
  const el = document.createElement('pre'); el.id = 'cpt-probe'; el.textContent = e.data; document.body.appendChild(el);
}});</script></body></html>"""


def inspect_page(html_path: Path, screenshot: Path | None = None, width: int = 1280, height: int = 900) -> dict:
    """Load ``html_path`` in headless Chromium in a ``width``-pixel viewport; return what the probe saw
    (and save a screenshot of the whole page at that width).

    Headless Chromium will not make a window narrower than 500 px, so the page is loaded in an iframe of
    exactly ``width`` px (its media queries and layout see that width); the probe posts its result to the
    frame's parent, which ``--dump-dom`` prints."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("chromium not found: `make browser` installs Debian's chromium where missing")
    html_path = Path(html_path)
    with tempfile.TemporaryDirectory() as tmp:
        page = html_path.read_text(encoding="utf-8")
        probe = page.replace("</body>", _PROBE + "</body>", 1) if "</body>" in page else page + _PROBE
        (Path(tmp) / "page.html").write_text(probe, encoding="utf-8")  # reports are standalone: figures embedded
        frame = Path(tmp) / "frame.html"
        frame.write_text(_FRAME.format(src="page.html", width=width, height=height), encoding="utf-8")
        base = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile", "--virtual-time-budget=15000"]
        dom = subprocess.run(base + [f"--window-size={max(width, 500)},{height}", "--dump-dom", frame.as_uri()],
                             capture_output=True, text=True, timeout=180).stdout
        match = re.search(r'<pre id="cpt-probe"[^>]*>(.*?)</pre>', dom, re.S)
        if not match:
            raise RuntimeError(f"the page did not finish loading in Chromium: {html_path}")
        seen = json.loads(html_lib.unescape(match.group(1)))
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            tall = max(height, min(int(seen.get("height", height)), MAX_SCREENSHOT_HEIGHT))
            frame.write_text(_FRAME.format(src="page.html", width=width, height=tall), encoding="utf-8")
            subprocess.run(base + [f"--window-size={width},{tall}", f"--screenshot={screenshot}", frame.as_uri()],
                           capture_output=True, timeout=180)
    return seen


def describe(items: list) -> str:
    """One line per named element (repeats counted), for an assertion message."""
    lines: dict[str, int] = {}
    for i in items:
        line = (f"  {i.get('where', '')}: {i.get('path', '')} — {i.get('why', '')} — “{i.get('text', '')}”"
                if isinstance(i, dict) else f"  {i}")
        lines[line] = lines.get(line, 0) + 1
    return "\n".join(line + (f" (×{n})" if n > 1 else "") for line, n in lines.items())
