"""Which order events become rows, and why the others are dead-lettered: strict rules, in SQL.

A batch is judged one of two ways, with the same outcome:
- the bulk path (`bulk_insert_sql`): DuckDB's NDJSON reader reads the fields straight from a spool file
  and a cheap, conservative form of the rules inserts the rows that are valid as they stand; unless every
  payload became a row, the caller rolls back and takes
- the per-message path (`validate_payloads`): the full rules (`rules_sql`) over the raw JSON text of each
  field, which convert what may be converted and name the first rule each rejected payload breaks.
So the per-message path decides whenever the bulk path does not accept a whole batch, and every row the
bulk path accepts, the per-message path accepts with the same values (tested on every coercion case).

Strict means a value goes in exactly as sent or not at all: ids are JSON integers >= 1 (not `true`, not
`600002.7`, not `"12"`), `amount` has at most two decimals, dates are ISO dates from year 1, and
`ordered_at` is an ISO date-time whose offset (`Z`, `+05:00`) is converted to UTC (no offset: already
UTC). A document giving one of the fields twice is rejected, naming the key (the NDJSON reader refuses
any duplicate key, so such a batch always falls back to the per-message path). A UTF-8 BOM or whitespace
before the JSON is accepted. Every literal in this SQL is one of our constants, never message content.
Known limit: JSON numbers are read as IEEE doubles, so an amount with more than 15 significant digits
may be rounded before it is judged."""

from __future__ import annotations

from reliability.kafka.events import ORDER_STATUSES, SCHEMA_NAME, SCHEMA_VERSION

TARGET_TABLE = "raw_orders"
SEPARATOR = b"\x1e"  # ASCII record separator: never valid inside a JSON document
FIELDS = ("schema", "schema_version", "order_id", "customer_id", "order_date", "ordered_at", "status", "amount")
STRING_FIELDS = ("schema", "order_date", "ordered_at", "status")
INT_FIELDS = ("schema_version", "order_id", "customer_id")
ROW_COLUMNS = ("order_id", "customer_id", "order_date", "ordered_at", "status", "amount")
MAX_DETAIL_VALUE = 60  # characters of an offending value quoted in `dlq.error.detail`

# `ordered_at`: ISO 8601 local date-time (seconds and up to 6 fraction digits optional), then an optional
# offset. Group 1 is the local part, group 4 the offset.
_DATETIME_RE = (
    "^([0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?)(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
_DATE_RE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
_AMOUNT_RE = "[0-9]+([.][0-9]{1,2})?"  # the reader prints numbers shortest-first: 12.10 arrives as 12.1
_WHITESPACE_AND_BOM = "chr(65279) || ' ' || chr(9) || chr(10) || chr(13)"


def sql_literal(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _status_list() -> str:
    return ", ".join(sql_literal(s) for s in ORDER_STATUSES)


def _kind_sql(name: str) -> str:
    """JSON kind of a field from the first byte of its raw text (`ord` is the cheapest test DuckDB has):
    MISSING, STRING, INT, NUMBER (a fraction or exponent) or OTHER (true, false, {...}, [...])."""
    r = f"r_{name}"
    number = (
        f"when ord({r}) = 45 or ord({r}) between 48 and 57 then (case when contains({r}, '.') "
        f"or contains({r}, 'e') or contains({r}, 'E') then 'NUMBER' else 'INT' end) "
        if name not in STRING_FIELDS
        else ""
    )
    return (
        f"case when {r} is null or {r} = 'null' then 'MISSING' when ord({r}) = 34 then 'STRING' "
        f"{number}else 'OTHER' end as k_{name}"
    )


def _text_sql(name: str) -> str:
    """The value of a string field: strip the quotes, or decode escapes when there are any (without a
    backslash the only quotes are the outer two)."""
    r = f"r_{name}"
    return (
        f"case when k_{name} = 'STRING' then "
        f"(case when contains({r}, '\\') then {r}->>'$' else substr({r}, 2, length({r}) - 2) end) end"
    )


_EXPECTED = {f: "('STRING')" for f in STRING_FIELDS} | {f: "('INT')" for f in INT_FIELDS}
_EXPECTED["amount"] = "('INT', 'NUMBER')"
_CHECKED = FIELDS[2:]
_MISSING = " or ".join(f"k_{f} = 'MISSING'" for f in _CHECKED)
_WRONG = " or ".join(f"k_{f} not in {_EXPECTED[f]}" for f in _CHECKED)
_MISSING_DETAIL = ", ".join(f"case when k_{f} = 'MISSING' then '{f}' end" for f in FIELDS)
_WRONG_DETAIL = ", ".join(f"case when k_{f} not in {_EXPECTED[f]} then '{f}' end" for f in _CHECKED)
_VALUE_FIELDS = ("order_id", "customer_id", "order_date", "ordered_at", "amount")
_BAD_VALUE = " or ".join(f"v_{f} is null" for f in _VALUE_FIELDS)
_BAD_VALUE_DETAIL = ", ".join(
    f"case when v_{f} is null then '{f}=' || left(coalesce(s_{f}, r_{f}), {MAX_DETAIL_VALUE}) end"
    for f in _VALUE_FIELDS
)


def rules_sql(source: str) -> str:
    """Judge every row of `source` (columns idx, is_object, duplicate_keys, r_<field> for each of FIELDS:
    the raw JSON text of that field, NULL when absent). Yields idx, error (NULL: valid), detail (names the
    field) and the typed row columns, exact or NULL."""
    kinds = ",\n        ".join(_kind_sql(f) for f in FIELDS)
    s_other = ", ".join(f"r_{f} as s_{f}" for f in ("order_id", "customer_id", "amount"))
    return f"""
with kinds as (
    select *,
        {kinds}
    from ({source})
), texts as (
    select *, {", ".join(_text_sql(f) + f" as s_{f}" for f in STRING_FIELDS)}, {s_other}
    from kinds
), parts as (
    select *, regexp_extract(s_ordered_at, '{_DATETIME_RE}', ['local', 'seconds', 'fraction', 'zone']) as dt
    from texts
), zoned as (
    select *, dt.local as local_ordered_at, dt.zone as zone_ordered_at
    from parts
), typed as (
    select *,
        case when k_order_id = 'INT' then try_cast(r_order_id as bigint) end as i_order_id,
        case when k_customer_id = 'INT' then try_cast(r_customer_id as bigint) end as i_customer_id,
        case when regexp_full_match(s_order_date, '{_DATE_RE}') then try_cast(s_order_date as date) end as d_order_date,
        try_cast(nullif(local_ordered_at, '') as timestamp) as t_local,
        case when zone_ordered_at in ('', 'Z') then 0
             when try_cast(substr(zone_ordered_at, 2, 2) as integer) <= 23
                  and try_cast(right(zone_ordered_at, 2) as integer) <= 59
             then (case when zone_ordered_at[1] = '-' then -1 else 1 end)
                  * (try_cast(substr(zone_ordered_at, 2, 2) as integer) * 60
                     + try_cast(right(zone_ordered_at, 2) as integer))
        end as offset_minutes,
        case when regexp_full_match(r_amount, '{_AMOUNT_RE}') then try_cast(r_amount as decimal(12, 2)) end
            as v_amount
    from zoned
), valued as (
    select *,
        case when i_order_id >= 1 then i_order_id end as v_order_id,
        case when i_customer_id >= 1 then i_customer_id end as v_customer_id,
        case when year(d_order_date) >= 1 then d_order_date end as v_order_date,
        case when offset_minutes = 0 then t_local else t_local - to_minutes(offset_minutes) end as utc_ordered_at
    from typed
), utc as (
    select *, case when year(utc_ordered_at) >= 1 then utc_ordered_at end as v_ordered_at
    from valued
), judged as (
    select *,
    case
        when not is_object then 'invalid_json'
        when duplicate_keys is not null then 'duplicate_key'
        when k_schema = 'MISSING' or k_schema_version = 'MISSING' then 'missing_field'
        when k_schema <> 'STRING' or s_schema <> {sql_literal(SCHEMA_NAME)} then 'unknown_schema'
        when k_schema_version <> 'INT' or try_cast(r_schema_version as bigint) is distinct from {SCHEMA_VERSION}
            then 'unsupported_schema_version'
        when {_MISSING} then 'missing_field'
        when {_WRONG} then 'wrong_type'
        when s_status not in ({_status_list()}) then 'invalid_status'
        when {_BAD_VALUE} then 'invalid_value'
    end as error
    from utc
)
select idx, error,
    case when error = 'duplicate_key' then duplicate_keys
         when error = 'missing_field' then concat_ws(',', {_MISSING_DETAIL})
         when error = 'unknown_schema' then 'schema=' || left(coalesce(s_schema, r_schema), {MAX_DETAIL_VALUE})
         when error = 'unsupported_schema_version' then 'schema_version=' || left(r_schema_version, {MAX_DETAIL_VALUE})
         when error = 'wrong_type' then concat_ws(',', {_WRONG_DETAIL})
         when error = 'invalid_status' then 'status=' || left(s_status, {MAX_DETAIL_VALUE})
         when error = 'invalid_value' then concat_ws(', ', {_BAD_VALUE_DETAIL})
    end as detail,
    v_order_id as order_id, v_customer_id as customer_id, v_order_date as order_date,
    v_ordered_at as ordered_at, s_status as status, v_amount as amount
from judged
"""


# The bulk path's reader: text fields decoded, the others as raw JSON (an id's kind shows in its text).
_READER_COLUMNS = (
    "{" + ", ".join(f"{sql_literal(f)}: {'VARCHAR' if f in ('schema', 'status') else 'JSON'}" for f in FIELDS) + "}"
)
_LOCAL_DATETIME_RE = '"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?"'


def _positive_int_sql(raw: str) -> str:
    """A JSON integer >= 1 from its raw text (the reader prints integers as bare digits), else NULL."""
    return (
        f"case when ord({raw}) between 49 and 57 and not (contains({raw}, '.') or contains({raw}, 'e') "
        f"or contains({raw}, 'E')) then try_cast({raw} as bigint) end"
    )


def bulk_insert_sql(path: str) -> str:
    """The bulk insert of the batch spooled at `path` (our own file name, quoted as a SQL literal); $1 is
    the `_loaded_at` time.

    It is a conservative, cheap version of the rules: it inserts only rows that are valid as they are
    (e.g. an `ordered_at` without offset), and the caller rolls back unless every payload became a row,
    so anything unusual is judged by the per-message path. Each row it accepts, the per-message path
    accepts with the same values (tested). The reader itself refuses a line that is not one JSON object
    (or has trailing content, or a duplicate key); only a blank line yields no row, and no line yields two.
    """
    typed = f"""
select {_positive_int_sql("order_id")} as order_id,
    {_positive_int_sql("customer_id")} as customer_id,
    case when regexp_full_match(order_date, '"{_DATE_RE}"') then try_cast(substr(order_date, 2, 10) as date) end
        as order_date,
    case when regexp_full_match(ordered_at, '{_LOCAL_DATETIME_RE}')
        then try_cast(substr(ordered_at, 2, length(ordered_at) - 2) as timestamp) end as ordered_at,
    status,
    case when regexp_full_match(amount, '{_AMOUNT_RE}') then try_cast(amount as decimal(12, 2)) end as amount,
    schema, schema_version
from read_json({sql_literal(path)}, format = 'newline_delimited', records = true, compression = 'uncompressed',
    columns = {_READER_COLUMNS})"""
    return f"""
insert into {TARGET_TABLE} ({", ".join(ROW_COLUMNS)}, _loaded_at)
select {", ".join(ROW_COLUMNS)}, $1::timestamp
from ({typed})
where schema = {sql_literal(SCHEMA_NAME)} and schema_version = '{SCHEMA_VERSION}' and status in ({_status_list()})
    and order_id is not null and customer_id is not null and year(order_date) >= 1 and year(ordered_at) >= 1
    and amount is not null
"""


_PATHS = "[" + ", ".join(f"'$.{f}'" for f in FIELDS) + "]"
_RAW_FROM_EXTRACT = ", ".join(f"j[{i + 1}]::varchar as r_{f}" for i, f in enumerate(FIELDS))
# Per-message source: strip a BOM or whitespace, keep JSON objects, extract the fields, and flag a field
# given twice (JSON readers disagree on which copy wins: one is never silently picked). A duplicated key
# that is not one of FIELDS is ignored like any extra key (the bulk reader refuses it, so such a batch is
# judged here).
_FIELD_LIST = "(" + ", ".join(sql_literal(f) for f in FIELDS) + ")"
_PRESENT = " + ".join(f"(j[{i + 1}] is not null)::integer" for i in range(len(FIELDS)))
_PER_MESSAGE_SOURCE = f"""
select idx, is_object,
    case when is_object and len(list_filter(keys, lambda k: k in {_FIELD_LIST})) > {_PRESENT} then 'duplicate key: '
        || array_to_string(list_distinct([k for k, i in keys if list_position(keys, k) <> i]), ',')
    end as duplicate_keys,
    {_RAW_FROM_EXTRACT}
from (
    select idx, is_object,
        case when is_object then json_extract(v, {_PATHS}) end as j,
        case when is_object then json_keys(v) end as keys
    from (
        select idx, json_valid(t) and starts_with(t, '{{') as is_object, t as v
        from (select idx, case when ord(v) = 123 then v else ltrim(v, {_WHITESPACE_AND_BOM}) end as t from _lines)
    )
)"""
PER_MESSAGE_SQL = "create or replace temp table _checked as\n" + rules_sql(_PER_MESSAGE_SOURCE)


def split_payloads(payloads: list[bytes]) -> tuple[str, dict[int, str]]:
    """The payloads as one text, SEPARATOR between them, for `_lines`; plus the indexes of payloads that
    are not UTF-8 or hold the separator (replaced by a non-JSON placeholder, rejected as invalid_encoding)."""
    joined = SEPARATOR.join(payloads)
    if joined.count(SEPARATOR) == len(payloads) - 1:
        try:
            return joined.decode("utf-8"), {}
        except UnicodeDecodeError:
            pass
    overrides: dict[int, str] = {}
    parts: list[str] = []
    for i, raw in enumerate(payloads):
        try:
            if SEPARATOR in raw:
                raise ValueError("separator byte")
            parts.append(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            overrides[i] = "payload is not UTF-8 text" if SEPARATOR not in raw else "payload holds byte 0x1e"
            parts.append("\x01")
    return SEPARATOR.decode().join(parts), overrides


def validate_payloads(con, payloads: list[bytes]) -> list[tuple[int, str, str | None]]:
    """Judge payloads one by one into temp table `_checked` (idx, error, detail, typed row columns; valid
    rows have error NULL). Returns (index, error, detail) of the rejected payloads, in order."""
    text, overrides = split_payloads(payloads)
    con.execute(
        "create or replace temp table _lines as "
        "select (i - 1)::bigint as idx, v from unnest(string_split($1, chr(30))) with ordinality as x(v, i)",
        [text],
    )
    con.execute(PER_MESSAGE_SQL)
    n = con.execute("select count(*) from _checked").fetchone()[0]
    if n != len(payloads):
        raise RuntimeError(f"validation saw {n} payloads, expected {len(payloads)}")
    out: list[tuple[int, str, str | None]] = []
    for idx, error, detail in con.execute(
        "select idx, error, detail from _checked where error is not null order by idx"
    ).fetchall():
        if idx in overrides:
            error, detail = "invalid_encoding", overrides[idx]
        out.append((int(idx), str(error), detail))
    return out


def insert_valid_sql() -> str:
    """Insert the rows `validate_payloads` accepted ($1: the `_loaded_at` time)."""
    return f"""insert into {TARGET_TABLE} ({", ".join(ROW_COLUMNS)}, _loaded_at)
        select {", ".join(ROW_COLUMNS)}, $1::timestamp from _checked where error is null"""
