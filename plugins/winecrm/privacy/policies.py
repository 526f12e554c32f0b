"""The catalogue's policies applied to one person's rows (anonymise, clear the send ledger,
delete, replace the address wherever still written), and the register of erased people that
keeps them erased (``crm.erasures``)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from winecrm.privacy import ErasureError, catalogue
from winecrm.privacy.catalogue import Policy
from winecrm.privacy.matching import _address_params, _address_regex, _names_regex, _text_hit
from winecrm.privacy.report import ErasureReport
from winecrm.privacy.schema import REDACTED, Table, _children_first

SUPPRESSION_SOURCE = "privacy_erase"

# The SQL twin of erased_marker(); crm.email_blocked_reason uses the same expression.
ERASED_MARKER_SQL = "'erased:' || encode(sha256(convert_to(lower(btrim({})), 'UTF8')), 'hex')"



def _anonymise(conn: psycopg.Connection, table: Table, columns: list[str], match: sql.Composable,
               params: dict) -> int:
    """Blank ``columns`` (and set the opt_out / email_valid flags) in the matching rows that
    still hold something; returns the rows changed."""
    sets = [sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in columns]
    left = [sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in columns]
    if "opt_out" in table.columns and table.columns["opt_out"].data_type == "boolean":
        sets.append(sql.SQL("opt_out = true"))
        left.append(sql.SQL("opt_out IS NOT TRUE"))
    if "email_valid" in table.columns and table.columns["email_valid"].data_type == "boolean":
        sets.append(sql.SQL("email_valid = false"))
        left.append(sql.SQL("email_valid IS DISTINCT FROM false"))
    if not sets:
        return 0
    if "updated_at" in table.columns:
        sets.append(sql.SQL("updated_at = now()"))
    return conn.execute(sql.SQL("UPDATE {} SET {} WHERE {} AND ({})").format(
        table.ident, sql.SQL(", ").join(sets), match, sql.SQL(" OR ").join(left)), params).rowcount


def _clear_ledger(conn: psycopg.Connection, table: Table, columns, match: sql.Composable, params: dict) -> int:
    cleared = [c for c in columns if c in table.columns and table.columns[c].nullable]
    sets = [sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in cleared]
    left = [sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in cleared]
    if "status" in table.columns and "skip_reason" in table.columns:
        # not sent yet: it never will be (the send would skip it anyway: no address)
        sets = [sql.SQL("skip_reason = CASE WHEN status IN ('rendered', 'sending') THEN 'erased' ELSE skip_reason END"),
                sql.SQL("status = CASE WHEN status IN ('rendered', 'sending') THEN 'skipped' ELSE status END"), *sets]
        left.append(sql.SQL("status IN ('rendered', 'sending')"))
    if "updated_at" in table.columns:
        sets.append(sql.SQL("updated_at = now()"))
    return conn.execute(sql.SQL("UPDATE {} SET {} WHERE {} AND ({})").format(
        table.ident, sql.SQL(", ").join(sets), match, sql.SQL(" OR ").join(left)), params).rowcount


def _ledger_traces(conn: psycopg.Connection, table: Table, match: sql.Composable, params: dict) -> tuple[set, set]:
    """Unsubscribe tokens and outbox files of the person's e-mails, read before the ledger is
    cleared: the tokens find the rendered e-mails (previews) among the files."""
    if not {"unsubscribe_token", "outbox_path"} <= set(table.columns):
        return set(), set()
    tokens, paths = set(), set()
    for token, path in conn.execute(sql.SQL("SELECT unsubscribe_token, outbox_path FROM {} WHERE {}").format(
            table.ident, match), params):
        if token:
            tokens.add(token)
        if path:
            paths.add(path)
    return tokens, paths


def _redact_everywhere(conn: psycopg.Connection, tables: dict[str, Table], addresses: list[str],
                       report: ErasureReport, names: list[str] = ()) -> None:
    """Replace the addresses and the full names (whole words) by [erased] wherever they are
    still written (free text such as run details, quarantine reasons, a campaign's test address,
    a decision note, json documents)."""
    names = list(names)
    if not addresses and not names:
        return
    patterns = ([_address_regex(addresses)] if addresses else []) + ([_names_regex(names)] if names else [])
    params = {**_address_params(addresses), "pattern": "|".join(patterns),
              "names_re": _names_regex(names) if names else None}
    for name, table in sorted(tables.items()):
        columns = table.searchable_columns
        if not columns:
            continue
        sets, hits = [], []
        for column in columns:
            ident = sql.Identifier(column.name)
            hit = _text_hit(ident, len(addresses), bool(names))
            if column.is_json:
                new = sql.SQL("regexp_replace({}::text, %(pattern)s, {}, 'gi')::{}").format(
                    ident, sql.Literal(REDACTED), sql.SQL(column.data_type))
            elif column.is_text_array:
                new = sql.SQL("ARRAY(SELECT regexp_replace(x, %(pattern)s, {}, 'gi') FROM unnest({}) "
                              "WITH ORDINALITY u(x, n) ORDER BY n)").format(sql.Literal(REDACTED), ident)
            else:
                new = sql.SQL("regexp_replace({}, %(pattern)s, {}, 'gi')").format(ident, sql.Literal(REDACTED))
            sets.append(sql.SQL("{} = CASE WHEN {} THEN {} ELSE {} END").format(ident, hit, new, ident))
            hits.append(hit)
        try:
            with conn.transaction():  # a savepoint: the error below names the table
                rows = conn.execute(sql.SQL("UPDATE {} SET {} WHERE {}").format(
                    table.ident, sql.SQL(", ").join(sets), sql.SQL(" OR ").join(hits)), params).rowcount
        except psycopg.Error as exc:
            raise ErasureError(f"could not replace the address in {name} ({exc.__class__.__name__}: "
                               f"{str(exc).splitlines()[0]}); nothing was changed") from exc
        if rows:
            report.outcome(name).redacted += rows


def _apply_policies(conn: psycopg.Connection, tables: dict[str, Table], params: dict, report: ErasureReport,
                    *, skip: tuple[Policy, ...] = ()) -> tuple[set[str], set[str], set[int]]:
    """Every catalogued table's policy on the rows about the person (``params``: %(codes)s,
    %(addrs)s). Returns the e-mails' unsubscribe tokens, their outbox files and the person's
    automation action ids (read before they go: they find the files and SMS lines)."""
    tokens: set[str] = set()
    ledger_paths: set[str] = set()
    action_ids: set[int] = set()
    to_delete = []
    for entry in catalogue.CATALOGUE:
        table = tables.get(entry.table)
        if table is None or not entry.findable or entry.policy in skip:
            continue
        match = catalogue.match(entry, with_json=entry.policy in (Policy.DELETE_DERIVED, Policy.DELETE_RAW))
        if entry.policy in (Policy.ANONYMISE_MASTER, Policy.BLANK_PERSONAL):
            columns = [c for c in entry.personal if c in table.columns and table.columns[c].nullable]
            report.outcome(entry.table).anonymised += _anonymise(conn, table, columns, match, params)
        elif entry.policy is Policy.CLEAR_LEDGER:
            found_tokens, found_paths = _ledger_traces(conn, table, match, params)
            tokens |= found_tokens
            ledger_paths |= found_paths
            report.outcome(entry.table).anonymised += _clear_ledger(conn, table, entry.personal, match, params)
        elif entry.policy in (Policy.DELETE_DERIVED, Policy.DELETE_RAW):
            to_delete.append(entry.table)
            if entry.table == "crm.automation_actions":
                action_ids |= {a for (a,) in conn.execute(sql.SQL("SELECT action_id FROM {} WHERE {}").format(
                    table.ident, match), params)}
    for name in _children_first(conn, to_delete):
        entry = catalogue.BY_TABLE[name]
        match = catalogue.match(entry, with_json=True)
        if entry.keep:
            match = sql.SQL("{} AND NOT ({})").format(match, sql.SQL(entry.keep))
        report.outcome(name).deleted += conn.execute(
            sql.SQL("DELETE FROM {} WHERE {}").format(tables[name].ident, match), params).rowcount
    return tokens, ledger_paths, action_ids


def _register(conn: psycopg.Connection, source: str, codes: list[str], addresses: list[str] = (),
              markers: list[str] = ()) -> int:
    """A row of crm.erasures: the client codes and the markers of the addresses (computed by the
    database, like crm.email_blocked_reason's)."""
    marker = sql.SQL(ERASED_MARKER_SQL).format(sql.SQL("a"))
    return conn.execute(sql.SQL(
        """INSERT INTO crm.erasures (source, client_codes, markers)
           SELECT %(source)s, %(codes)s::text[],
                  ARRAY(SELECT DISTINCT m FROM (SELECT {} AS m FROM unnest(%(addrs)s::text[]) a
                                                UNION SELECT unnest(%(markers)s::text[])) x ORDER BY m)""").format(marker),
        {"source": source, "codes": list(codes), "addrs": list(addresses), "markers": list(markers)}).rowcount
