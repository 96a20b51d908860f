"""`reliability shop ...`: the demo shop's data generator."""

from __future__ import annotations

import argparse
from datetime import date


def register(subparsers: argparse._SubParsersAction) -> None:
    shop = subparsers.add_parser("shop", help="the demo shop: generate deterministic raw data")
    shop_sub = shop.add_subparsers(dest="shop_command", metavar="COMMAND", required=True)
    gen = shop_sub.add_parser("generate", help="write daily partitions of the raw tables into DuckDB")
    gen.add_argument("--seed", type=int, default=42, help="random seed: the same seed gives the same data")
    gen.add_argument("--orders-per-day", type=int, default=1_000, help="scale: orders in each day")
    gen.add_argument("--days", type=int, default=7, help="how many days, ending with --end-date")
    gen.add_argument("--end-date", type=date.fromisoformat, default=None, help="last day (default today)")
    gen.add_argument("--tables", default="raw_customers,raw_orders,raw_payments", help="comma-separated")
    gen.add_argument("--warehouse", default=None, help="DuckDB file (default: from settings)")
    gen.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace) -> int:
    from reliability.errors import UserFacingError
    from reliability.settings import get_settings
    from reliability.shop.generator import RAW_TABLES, ShopScale, days_ending, generate

    tables = tuple(t.strip() for t in args.tables.split(",") if t.strip())
    unknown = [t for t in tables if t not in RAW_TABLES]
    if unknown:
        raise UserFacingError(f"--tables: unknown table(s) {unknown}; expected some of {list(RAW_TABLES)}")
    if args.orders_per_day < 1 or args.days < 1:
        raise UserFacingError("--orders-per-day and --days must be at least 1")
    warehouse = args.warehouse or str(get_settings().warehouse_path)
    from pathlib import Path

    Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    days = days_ending(args.end_date or date.today(), args.days)
    totals = generate(warehouse, days, ShopScale(seed=args.seed, orders_per_day=args.orders_per_day), tables)
    for table, rows in totals.items():
        print(f"{table}: {rows} rows over {len(days)} day(s) {days[0]}..{days[-1]} -> {warehouse}")
    return 0
