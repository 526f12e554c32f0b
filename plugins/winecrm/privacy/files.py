"""The platform's files that may name the person (outbox e-mails, reports, work files, the
dry-run SMS outbox): found, removed or rewritten without their lines; Data Docs rebuilt after."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import logging
import os
import re
import tempfile
from pathlib import Path

from winecrm.core import settings
from winecrm.privacy import ErasureError
from winecrm.privacy.identity import Person

log = logging.getLogger("winecrm.privacy")

SMS_OUTBOX = "sms"                        # <outbox>/sms/*.jsonl: one JSON line per dry-run SMS


def sms_outbox_dir() -> Path:
    return settings.paths().outbox_dir / SMS_OUTBOX


def _sms_line_about(line: str, phones: set[str], action_ids: set[int], codes: list[str]) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        recipient = str(record.get("recipient") or "")
        if recipient and (recipient in phones or "+" + recipient.lstrip("+") in phones):
            return True
        if record.get("action_id") in action_ids:
            return True
        if str(record.get("client_code") or "") in codes:
            return True
    # a line we cannot read: by its text
    return any(p in line for p in phones if len(p) >= 10) or any(
        _code_pattern(c).search(line) for c in codes if _distinctive(c))


def sms_outbox_rewrites(person: Person, action_ids: set[int], folder: Path | None = None) -> dict[Path, tuple[int, list[str]]]:
    """For each SMS outbox file holding lines about the person (their phone numbers in any
    written form — E.164 without the plus is what the outbox records —, one of their automation
    actions, their client code): (lines removed, lines kept)."""
    folder = folder or sms_outbox_dir()
    phones = set(person.phones)
    found: dict[Path, tuple[int, list[str]]] = {}
    if not folder.is_dir() or not (phones or action_ids or person.client_codes):
        return found
    for path in sorted(folder.glob("*.jsonl")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        except OSError as exc:
            raise ErasureError(f"cannot read {path} ({exc.strerror}): nothing was changed") from exc
        kept = [line for line in lines if not _sms_line_about(line, phones, action_ids, person.client_codes)]
        if len(kept) < len(lines):
            found[path] = (len(lines) - len(kept), kept)
    return found


def _rewrite_atomically(path: Path, lines: list[str]) -> None:
    """``path`` with only ``lines`` (removed when none is left): a temporary file in the same
    folder renamed over it, so a reader never sees half a file."""
    if not lines:
        path.unlink(missing_ok=True)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------
# files: outbox (.eml), reports (previews, weekly report), Data Docs


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _code_pattern(code: str) -> re.Pattern:
    """The client code as a whole token: C1 must not match C10."""
    return re.compile(r"(?<![0-9A-Za-z])" + re.escape(code) + r"(?![0-9A-Za-z])", re.IGNORECASE)


def _distinctive(code: str) -> bool:
    """A code worth looking for in file contents: a short all-digit code (1234) would match
    prices and counts in every report; those are found through the name of the file only."""
    return not code.isdigit() or len(code) >= 6


def _eml_text(data: bytes) -> str:
    """An .eml as a person reads it: decoded headers and decoded text/HTML parts (quoted-printable
    and base64 bodies hide the address from a plain byte search)."""
    try:
        message = email.message_from_bytes(data, policy=email.policy.default)
        texts = [f"{k}: {v}" for k, v in message.items()]
        for part in message.walk():
            if part.get_content_maintype() == "text":
                texts.append(part.get_content())
        return "\n".join(texts)
    except Exception:  # noqa: BLE001 - a broken file is searched as bytes only
        return ""


def file_mentions(path: Path, data: bytes, addresses: list[str], codes: list[str], tokens: set[str]) -> bool:
    if any(_code_pattern(c).search(path.name) for c in codes):
        return True
    texts = [data.decode("utf-8", errors="replace")]
    if path.suffix.lower() == ".eml":
        texts.append(_eml_text(data))
    for text in texts:
        lowered = text.lower()
        if any(a in lowered for a in addresses) or any(t in text for t in tokens):
            return True
        if any(_code_pattern(c).search(text) for c in codes if _distinctive(c)):
            return True
    return False


def file_roots() -> list[Path]:
    paths = settings.paths()
    return list(dict.fromkeys([paths.outbox_dir, paths.reports_dir, paths.docs_dir]))


def find_files(person: Person, tokens: set[str] = frozenset(), ledger_paths: set[str] = frozenset(),
               roots: list[Path] | None = None) -> list[Path]:
    """Files under the outbox, reports and Data Docs folders whose name holds one of the client
    codes or whose content holds an address, a client code or the token of one of the person's
    e-mails; plus the .eml files the ledger says were written for them. The SMS outbox files
    hold many people: they are rewritten without the person's lines (``sms_outbox_rewrites``),
    not removed here."""
    found: dict[Path, None] = {}
    sms = sms_outbox_dir()
    for raw in ledger_paths:
        path = Path(raw)
        if path.is_file():
            found[path] = None
    for root in roots or file_roots():
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path in found or not path.is_file() or (path.suffix == ".jsonl" and _under(path, sms)):
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ErasureError(f"cannot read {path} ({exc.strerror}): nothing was changed") from exc
            if file_mentions(path, data, person.addresses, person.client_codes, tokens):
                found[path] = None
    return list(found)


def _rebuild_data_docs() -> bool:
    """The Data Docs index after pages were removed (the next run rebuilds it anyway)."""
    try:
        from winecrm.etl.gx_context import rebuild_data_docs

        rebuild_data_docs(settings.paths().docs_dir)
        return True
    except Exception as exc:  # noqa: BLE001 - the erasure is done; the next run rebuilds the site
        log.warning("Data Docs not rebuilt after the erasure (%s); the next run rebuilds them", exc)
        return False


# --------------------------------------------------------------------------------------------
# Brevo
