"""HTML → PDF through headless Chromium's own print-to-PDF (``--print-to-pdf``).

Chromium is maintained, renders the same HTML a reviewer opens in a browser (inline SVG
included), and is installed from Debian (``apt-get install chromium``; ``.ci/run`` does it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..exceptions import ConfigError

__all__ = ["find_chromium", "html_to_pdf"]

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """``$AUDITKIT_CHROMIUM``, else the first Chromium/Chrome on ``PATH`` (None when absent)."""
    env = os.environ.get("AUDITKIT_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def html_to_pdf(html: str, out: str | os.PathLike[str], *, timeout: float = 120.0) -> Path:
    """Print ``html`` (a self-contained document) to the PDF file ``out``."""
    browser = find_chromium()
    if browser is None:
        raise ConfigError(
            "PDF output needs headless Chromium; none was found (looked at $AUDITKIT_CHROMIUM "
            f"and {', '.join(_NAMES)} on PATH). Install it (Debian: apt-get install chromium) or "
            "use --format html."
        )
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="auditkit-pdf-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        cmd = [browser, "--headless=new", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-pdf-header-footer",
               f"--user-data-dir={Path(tmp) / 'profile'}", f"--print-to-pdf={out}",
               page.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise ConfigError(f"Chromium did not print the PDF within {timeout:.0f} s.") from None
    if proc.returncode != 0 or not out.is_file() or out.read_bytes()[:5] != b"%PDF-":
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise ConfigError(f"Chromium ({browser}) could not print the PDF (exit code "
                          f"{proc.returncode}): {' | '.join(tail)}")
    return out
