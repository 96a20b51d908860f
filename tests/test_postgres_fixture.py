import pytest
import sqlalchemy as sa


@pytest.mark.postgres
def test_fresh_databases_are_real_and_isolated(pg_url, postgres_server):
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("create table t (x int)"))
        conn.execute(sa.text("insert into t values (1)"))
        assert conn.execute(sa.text("select version()")).scalar().startswith("PostgreSQL")
    other = sa.create_engine(postgres_server.create_database("isolation_probe"))
    with other.connect() as conn:
        assert conn.execute(sa.text("select to_regclass('t')")).scalar() is None
