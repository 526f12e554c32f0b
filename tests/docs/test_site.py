"""The documentation: the site builds with --strict (a broken link, anchor or include fails), and
the README stays a short way in whose links all lead somewhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    site = tmp_path / "site"
    pages = {p.name for p in site.glob("*.html")}
    assert {"index.html", "operating.html", "deployment.html", "campaigns.html", "privacy.html",
            "warehouse.html", "benchmark-results.html"} <= pages
    # the benchmark page is bench/RESULTS.md itself, included at build time
    assert "Issue 22" in (site / "benchmark-results.html").read_text(encoding="utf-8")
    # nothing loaded from the internet (no web font, the search's Web Worker shim vendored), so the
    # pages render and search the same with no network, opened from the file system
    for page in sorted(site.glob("*.html")):
        scripts = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text(encoding="utf-8"))
        assert not scripts, (page.name, scripts)
    assert (site / "assets" / "vendor" / "iframe-worker" / "shim.js").is_file()


def test_the_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "make demo" in readme and "make test" in readme
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert links, "the README points into the documentation"
    for link in links:
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link
