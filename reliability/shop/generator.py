"""Deterministic data for the demo shop: the same seed, day and scale always give the same rows.

Rows are made inside DuckDB from `range()` and `hash()`, so 10 million orders take seconds. Each
raw table is daily-partitioned by its business date; writing a partition replaces that day only.
Orders of day `d` reference only customers who signed up on day `d`, so every partition is
self-contained: foreign keys hold for any set of loaded days, and a backfill of one day is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import duckdb

from reliability.clock import utcnow

SHOP_START_DATE = date(2026, 1, 1)
ORDER_STATUSES = ("placed", "shipped", "completed", "returned", "cancelled")
PAYMENT_METHODS = ("credit_card", "bank_transfer", "coupon", "gift_card")
RAW_TABLES = ("raw_customers", "raw_orders", "raw_payments")

RAW_TABLE_DDL: dict[str, str] = {
    "raw_orders": """
        create table if not exists raw_orders (
            order_id bigint, customer_id bigint, order_date date, ordered_at timestamp,
            status varchar, amount decimal(12, 2), _loaded_at timestamp)""",
    "raw_customers": """
        create table if not exists raw_customers (
            customer_id bigint, name varchar, email varchar, country varchar, signup_date date,
            _loaded_at timestamp)""",
    "raw_payments": """
        create table if not exists raw_payments (
            payment_id bigint, order_id bigint, payment_date date, method varchar,
            amount decimal(12, 2), _loaded_at timestamp)""",
}

# the date column each raw table is partitioned by
PARTITION_COLUMN = {
    "raw_orders": "order_date",
    "raw_customers": "signup_date",
    "raw_payments": "payment_date",
}


@dataclass(frozen=True)
class ShopScale:
    """How much data one day holds. Customers: one per `orders_per_customer` orders."""

    seed: int = 42
    orders_per_day: int = 1_000
    orders_per_customer: int = 10

    @property
    def customers_per_day(self) -> int:
        return max(1, self.orders_per_day // self.orders_per_customer)


def day_index(day: date) -> int:
    index = (day - SHOP_START_DATE).days
    if index < 0:
        raise ValueError(f"day {day} is before the shop opened on {SHOP_START_DATE}")
    return index


def _rand(seed: int, column: str, salt: str, modulo: int) -> str:
    """SQL for a deterministic pseudo-random integer in [0, modulo) from a seed, a column and a salt."""
    return f"(hash({seed}, {column}, '{salt}') % {modulo})::bigint"


def _orders_select(scale: ShopScale, day: date) -> str:
    """SQL selecting the orders of `day` (all values are ints/dates we format, never user text)."""
    d = day_index(day)
    first_id = d * scale.orders_per_day + 1
    first_customer = d * scale.customers_per_day + 1
    statuses = "[" + ", ".join(f"'{s}'" for s in ORDER_STATUSES) + "]"
    pct = _rand(scale.seed, "i", "status", 100)
    return f"""
        select
            i as order_id,
            {first_customer} + {_rand(scale.seed, "i", "customer", scale.customers_per_day)} as customer_id,
            date '{day.isoformat()}' as order_date,
            date '{day.isoformat()}' + to_seconds({_rand(scale.seed, "i", "time", 86400)})
                as ordered_at,
            {statuses}[1 + (case
                when {pct} < 10 then 0 when {pct} < 25 then 1 when {pct} < 85 then 2
                when {pct} < 90 then 3 else 4 end)] as status,
            ({_rand(scale.seed, "i", "amount", 50000)} / 100.0 + 1)::decimal(12, 2) as amount
        from range({first_id}, {first_id + scale.orders_per_day}) as t(i)"""


def _customers_select(scale: ShopScale, day: date) -> str:
    d = day_index(day)
    first_id = d * scale.customers_per_day + 1
    countries = "['DE', 'FR', 'NL', 'US', 'GB', 'ES', 'IT', 'PL']"
    return f"""
        select
            i as customer_id,
            'Customer ' || i as name,
            'customer' || i || '@example.com' as email,
            {countries}[1 + {_rand(scale.seed, "i", "country", 8)}] as country,
            date '{day.isoformat()}' as signup_date
        from range({first_id}, {first_id + scale.customers_per_day}) as t(i)"""


def _payments_select(scale: ShopScale, day: date) -> str:
    methods = "[" + ", ".join(f"'{m}'" for m in PAYMENT_METHODS) + "]"
    return f"""
        select
            o.order_id as payment_id,
            o.order_id,
            o.order_date as payment_date,
            {methods}[1 + {_rand(scale.seed, "o.order_id", "method", 4)}] as method,
            o.amount
        from ({_orders_select(scale, day)}) as o
        where o.status <> 'cancelled'"""


SELECTS = {"raw_orders": _orders_select, "raw_customers": _customers_select, "raw_payments": _payments_select}


def ensure_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in RAW_TABLE_DDL.values():
        con.execute(ddl)


def write_partition(
    con: duckdb.DuckDBPyConnection, table: str, day: date, scale: ShopScale, loaded_at: datetime | None = None
) -> int:
    """Replace one day of `table` with generated rows in one transaction; return the row count.

    `_loaded_at` comes from the caller (or the one injectable clock), never from DuckDB's own clock,
    so freshness checks and the code that judges them agree on "now"."""
    stamp = (loaded_at or utcnow()).astimezone(UTC).replace(tzinfo=None)
    if table not in SELECTS:
        raise ValueError(f"unknown raw table {table!r}; expected one of {sorted(SELECTS)}")
    con.execute(RAW_TABLE_DDL[table])
    column = PARTITION_COLUMN[table]
    con.execute("begin transaction")
    try:
        con.execute(f'delete from "{table}" where "{column}" = ?', [day])
        con.execute(f'insert into "{table}" select *, ?::timestamp from ({SELECTS[table](scale, day)})', [stamp])
        count = con.execute(f'select count(*) from "{table}" where "{column}" = ?', [day]).fetchone()[0]
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return int(count)


def order_rows(scale: ShopScale, day: date) -> list[tuple]:
    """The orders of one day as Python tuples (for producers that emit them as events)."""
    with duckdb.connect() as con:
        return con.execute(f"select * from ({_orders_select(scale, day)}) order by order_id").fetchall()


def days_ending(last_day: date, count: int) -> list[date]:
    """`count` consecutive days ending with `last_day`, never before the shop opened."""
    first = max(SHOP_START_DATE, last_day - timedelta(days=count - 1))
    return [first + timedelta(days=i) for i in range((last_day - first).days + 1)]


def generate(
    warehouse_path: str, days: list[date], scale: ShopScale, tables: tuple[str, ...] = RAW_TABLES
) -> dict[str, int]:
    """Write every given day of every given table; return rows written per table."""
    totals = dict.fromkeys(tables, 0)
    with duckdb.connect(warehouse_path) as con:
        for table in tables:
            for day in days:
                totals[table] += write_partition(con, table, day, scale)
    return totals
