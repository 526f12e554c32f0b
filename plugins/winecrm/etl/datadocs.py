"""Make Great Expectations Data Docs viewable offline, show warnings as warnings, and run times
in Paris time.

GX writes pages that pull Bootstrap, jQuery, Vega, Font Awesome… from public CDNs and a logo
from S3. We copy the same files (vendored in ``include/static/datadocs/vendor``) into the site
and point every page at them, so the docs open from disk or an intranet with no internet.

Run times: the validate step gives GX a run name and lets it stamp the run in UTC (the stored
key, the page's folder ``20261116T050012.123456Z``, stays UTC: unambiguous, sorts right). GX has
no display zone: its index prints the machine's zone (« 2026-11-16 05:00:12 UTC » on a server),
its pages « 2026-11-16T05:00:12Z » — with a « Z » even when the time is not UTC (a worker set to
Paris). A Paris-aware run time would be mislabelled, so the pages are rewritten here instead:
every run time people read becomes « 16/11/2026 06:00:12 (Paris) », worked out from the
instant GX recorded (the index's sort key, the page's UTC folder), never from its text.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

from winecrm.core import settings

VENDOR_DIR = settings.INCLUDE_DIR / "static" / "datadocs" / "vendor"

# CDN address (prefix match) -> vendored file
CDN_FILES = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table-filter-control.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-prefers-dark.css",
}
WARNINGS_SUFFIX = "_warnings"  # the suites of rules that flag rows without quarantining them
_INDEX_ROW = re.compile(r"\{'validation_success': .*?'asset_name': '[^']*'\}", re.S)
_FAILED_ICON = '<i class="fas fa-times text-danger ge-failed-icon" ></i>'
_WARNING_ICON = ('<i class="fas fa-exclamation-triangle text-warning" title="rows loaded with a flag"></i>'
                 '<span class="text-warning"> warnings</span>')
_PAGE_FAILED = '<i class="fas fa-times text-danger" aria-hidden="true"></i> Failed'
_PAGE_WARNING = ('<i class="fas fa-exclamation-triangle text-warning" aria-hidden="true"></i> Warnings '
                 '(rows loaded with a flag, nothing quarantined)')
_ASSET_ATTR = re.compile(r'(?P<attr>src|href)="(?P<url>https?://[^"]+)"')
_LOGO = "great-expectations-web-assets"


def external_assets(html: str) -> list[str]:
    """Script/style/image URLs a page would fetch from the internet (anchors excluded)."""
    found = []
    for tag in re.finditer(r"<(script|link|img)\b[^>]*>", html):
        for match in _ASSET_ATTR.finditer(tag.group(0)):
            found.append(match.group("url"))
    return found


def mark_warning_suites(html: str, page: Path) -> str:
    """GX marks any validation with a failed expectation "Failed" (red ✗). A warnings suite's
    failures only flag rows: show them as warnings, keep ✗ for rows really quarantined."""
    if "ge-index-page-validation-results-table" in html:
        def row(match: re.Match) -> str:
            text = match.group(0)
            if f"{WARNINGS_SUFFIX}'" not in text.split("'_expectation_suite_name_sort': ", 1)[-1].split(",", 1)[0]:
                return text
            return text.replace(_FAILED_ICON, _WARNING_ICON).replace(
                "'_validation_success_text': 'Failed'", "'_validation_success_text': 'Warnings'")
        return _INDEX_ROW.sub(row, html)
    inside_site = page.as_posix().rsplit("/validations/", 1)[-1]  # <suite>/<run>/<time>/<batch>.html
    if "/validations/" in page.as_posix() and inside_site.split("/", 1)[0].endswith(WARNINGS_SUFFIX):
        return html.replace(_PAGE_FAILED, _PAGE_WARNING)
    return html


_INDEX_RUN_TIME = re.compile(r"'run_time': '[^']*', '_run_time_sort': (?P<ts>-?[0-9.]+)")
_PAGE_RUN_FOLDER = re.compile(r"/validations/.+/(?P<utc>\d{8}T\d{6}\.\d{6}Z)/[^/]+\.html$")


def paris_run_time(moment: dt.datetime) -> str:
    """« 16/11/2026 06:00:12 (Paris) »"""
    from winecrm.core.weeks import estate_zone

    return f"{moment.astimezone(estate_zone()):%d/%m/%Y %H:%M:%S} (Paris)"


def show_paris_times(html: str, page: Path) -> str:
    """The run times of a Data Docs page in Paris time (see the module docstring)."""
    if "'_run_time_sort': " in html:  # the index: one row per validation, with the instant as a number
        def row(m: re.Match) -> str:
            ran = dt.datetime.fromtimestamp(float(m["ts"]), dt.timezone.utc)
            return f"'run_time': '{paris_run_time(ran)}', '_run_time_sort': {m['ts']}"

        html = _INDEX_RUN_TIME.sub(row, html)
    folder = _PAGE_RUN_FOLDER.search(page.as_posix())
    if folder:  # a validation page: its breadcrumb and « Run Time » row
        ran = dt.datetime.strptime(folder["utc"], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.timezone.utc)
        shown = paris_run_time(ran)
        # printed in UTC, or in the machine's zone (still marked Z)
        for printed in {f"{ran:%Y-%m-%dT%H:%M:%S}Z", f"{ran.astimezone():%Y-%m-%dT%H:%M:%S}Z"}:
            html = html.replace(f" / {printed}</li>", f" / {shown}</li>")
            html = html.replace(f">{printed}</div>", f">{shown}</div>")
    return html


def make_offline(site_dir: Path) -> int:
    """Vendor the assets into ``site_dir/static/vendor`` and rewrite pages; returns pages changed."""
    if not site_dir.is_dir():
        return 0
    target = site_dir / "static" / "vendor"
    shutil.copytree(VENDOR_DIR, target, dirs_exist_ok=True)
    changed = 0
    for page in site_dir.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        relative = os.path.relpath(target, page.parent).replace(os.sep, "/")

        def swap(tag_match: re.Match, relative: str = relative) -> str:
            tag = tag_match.group(0)

            def swap_url(match: re.Match) -> str:
                url = match.group("url")
                if _LOGO in url:
                    return f'{match.group("attr")}="{relative}/logo.svg"'
                for prefix, local in CDN_FILES.items():
                    if url == prefix or url.startswith(prefix + "/") or url.startswith(prefix + "?"):
                        return f'{match.group("attr")}="{relative}/{local}"'
                return match.group(0)

            return _ASSET_ATTR.sub(swap_url, tag)

        new_html = show_paris_times(mark_warning_suites(re.sub(r"<(script|link|img)\b[^>]*>", swap, html), page), page)
        if new_html != html:
            page.write_text(new_html, encoding="utf-8")
            changed += 1
    return changed
