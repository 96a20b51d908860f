"""A small, clean shop warehouse for contract tests: raw tables and the staging models' shape.

Rows are made in DuckDB SQL so every test gets a fresh file in milliseconds; loads are stamped
`now`, business dates end today, so every freshness rule holds on clean data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb

from reliability.clock import utcnow

STATUSES = "['placed', 'shipped', 'completed', 'returned', 'cancelled']"
METHODS = "['credit_card', 'bank_transfer', 'coupon', 'gift_card']"
COUNTRIES = "['DE', 'FR', 'NL', 'US']"


def build_clean_warehouse(path: Path, orders: int = 200, now: datetime | None = None) -> Path:
    """`now` (default: the one clock, never DuckDB's own) stamps the loads and ends the business dates."""
    customers = max(1, orders // 4)
    at = (now or utcnow()).astimezone(UTC).replace(tzinfo=None)
    clock = {"now": at, "today": at.date()}
    with duckdb.connect(str(path)) as con:
        con.execute(
            f"""
            create or replace table raw_customers as
            select i::bigint as customer_id, 'Customer ' || i as name,
                   'customer' || i || '@example.com' as email,
                   {COUNTRIES}[1 + (i % 4)::int] as country,
                   ($today::date - (i % 5)::int) as signup_date,
                   $now::timestamp as _loaded_at
            from range(1, {customers + 1}) t(i)""",
            clock,
        )
        con.execute(
            f"""
            create or replace table raw_orders as
            select i::bigint as order_id, (1 + i % {customers})::bigint as customer_id,
                   ($today::date - (i % 3)::int) as order_date,
                   ($today::date - (i % 3)::int)::timestamp + to_seconds(i % 3600) as ordered_at,
                   {STATUSES}[1 + (i % 5)::int] as status,
                   (10 + (i % 50) * 3.5)::decimal(12, 2) as amount,
                   $now::timestamp as _loaded_at
            from range(1, {orders + 1}) t(i)""",
            clock,
        )
        con.execute(f"""
            create or replace table raw_payments as
            select order_id as payment_id, order_id, order_date as payment_date,
                   {METHODS}[1 + (order_id % 4)::int] as method, amount, _loaded_at
            from raw_orders where status <> 'cancelled'""")
        con.execute("""
            create or replace table stg_orders as
            select order_id, customer_id, order_date, ordered_at, status, amount from raw_orders""")
        con.execute("""
            create or replace table stg_customers as
            select customer_id, name as customer_name, email, country, signup_date from raw_customers""")
        con.execute("""
            create or replace table stg_payments as
            select payment_id, order_id, payment_date, method as payment_method, amount from raw_payments""")
    return path


def execute(path: Path, *statements: str) -> None:
    with duckdb.connect(str(path)) as con:
        for statement in statements:
            con.execute(statement)
