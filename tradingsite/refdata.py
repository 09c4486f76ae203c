"""Reference data, cached in each process: what every order reads and almost nothing writes
(API tokens, the accounts a user trades, instruments, risk limits, trading states, rate-limit
overrides).

One number says whether the cache is current: the single row of `refdata_version`. A trigger
on every cached table sets it to a new value in the same transaction as the write, whoever
writes (services, the admin, `QuerySet.update`, raw SQL, TRUNCATE). A value is never used twice
(a sequence on PostgreSQL, a random 63-bit number on SQLite), so entries cached from a
transaction that rolled back can never match again.

A request reads the version once, at its first cached lookup (`scope()`, opened by
`RefDataScopeMiddleware`); outside a scope every lookup reads it. A statement may also carry
the read along (`VERSION_SUBQUERY`, then `assume`): a submit task's claim does, and the halt
check right after it reads no version of its own. When the version differs
from the cached one, the whole cache is dropped. What a lookup answers is therefore never
older than the version read at the start of the request: the same guarantee the uncached
queries gave, minus the queries. A write made through the ORM in this process also makes the
request read the version again (`forget`), so a request sees its own writes.

The tables and the columns whose writes count are listed in `TABLES`; the migration
`risk 0005` creates the row and the triggers from it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from django.db.models.signals import m2m_changed, post_delete, post_save

from . import db

T = TypeVar("T")

# table -> the columns whose UPDATE changes what is cached (None: every column). Accounts
# change their cash on every fill: only their identity and status are cached.
TABLES: dict[str, tuple[str, ...] | None] = {
    "auth_user": ("username", "is_active", "is_staff", "is_superuser"),
    "auth_user_groups": None,
    "auth_user_user_permissions": None,
    "auth_group_permissions": None,
    "authtoken_token": None,
    "orders_account": ("code", "name", "currency", "is_active"),
    "orders_account_users": None,
    "orders_instrument": None,
    "risk_risklimit": None,
    "risk_tradingstate": None,
    "risk_ratelimitoverride": None,
}

MAX_ENTRIES = 20_000


class _Scope:
    __slots__ = ("version",)

    def __init__(self) -> None:
        self.version: int | None = None


class _Cache:
    __slots__ = ("version", "values")

    def __init__(self, version: int | None) -> None:
        self.version = version
        self.values: dict[Hashable, Any] = {}


_scope: ContextVar[_Scope | None] = ContextVar("refdata_scope", default=None)
_cache = _Cache(None)
_lock = threading.Lock()


@contextmanager
def scope() -> Iterator[None]:
    """Read the version at most once inside: one request, one task."""
    token = _scope.set(_Scope())
    try:
        yield
    finally:
        _scope.reset(token)


def forget() -> None:
    """This process wrote reference data: the next lookup reads the version again."""
    current = _scope.get()
    if current is not None:
        current.version = None


_VERSION_READ = "SELECT version FROM refdata_version WHERE id = 1"
# The version as an expression another statement can carry along (`assume`).
VERSION_SUBQUERY = f"({_VERSION_READ})"


def assume(version: int | None) -> None:
    """`version` was read along with another statement of this scope (VERSION_SUBQUERY): the
    scope's lookups use it instead of reading it again. Outside a scope, or when the scope has
    read its version already, nothing changes."""
    current = _scope.get()
    if current is not None and current.version is None and version is not None:
        current.version = version


def _version() -> int | None:
    current = _scope.get()
    if current is not None and current.version is not None:
        return current.version
    rows = db.read(_VERSION_READ)
    version = rows[0][0] if rows else None
    if current is not None:
        current.version = version
    return version


def cached(key: Hashable, load: Callable[[], T]) -> T:
    """The value of `key`, from the cache when it is current, else from `load()` (kept unless
    None). Hand out copies of model instances (`instance_copy`): a cached value is shared."""
    global _cache
    version = _version()
    if version is None:  # no version row: a database the migration has not reached
        return load()
    cache = _cache
    if cache.version == version:
        try:
            return cache.values[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
    value = load()
    if value is None:  # not found: answered, not kept (unknown keys must not fill the cache)
        return value
    with _lock:
        if _cache.version != version or len(_cache.values) >= MAX_ENTRIES:
            _cache = _Cache(version)
        _cache.values[key] = value
    return value


def instance_copy(instance: T) -> T:
    """A copy of a cached model instance for one caller: its own state, nothing shared."""
    return copy.copy(instance)


def clear() -> None:
    """Drop everything cached in this process (tests, and after a restore)."""
    global _cache
    with _lock:
        _cache = _Cache(None)


def _written(sender: Any, **kwargs: Any) -> None:
    if sender._meta.db_table in TABLES:
        forget()


def connect_signals() -> None:
    """Writes through the ORM in this process: read the version again (own writes)."""
    for signal in (post_save, post_delete, m2m_changed):
        signal.connect(_written, dispatch_uid=f"refdata-{id(signal)}")


# The migration's SQL, per database.


def create_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [
            "CREATE SEQUENCE refdata_version_seq",
            "CREATE TABLE refdata_version (id smallint PRIMARY KEY CHECK (id = 1), "
            "version bigint NOT NULL)",
            "INSERT INTO refdata_version VALUES (1, nextval('refdata_version_seq'))",
            """CREATE FUNCTION refdata_version_bump() RETURNS trigger AS $$
BEGIN
    UPDATE refdata_version SET version = nextval('refdata_version_seq') WHERE id = 1;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql""",
            *[
                statement
                for table, columns in TABLES.items()
                for statement in (
                    f"CREATE TRIGGER refdata_bump AFTER INSERT OR DELETE OR "
                    f"UPDATE{' OF ' + ', '.join(columns) if columns else ''} ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION refdata_version_bump()",
                    f"CREATE TRIGGER refdata_bump_truncate AFTER TRUNCATE ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION refdata_version_bump()",
                )
            ],
        ]
    bump = "UPDATE refdata_version SET version = abs(random()) WHERE id = 1;"
    return [
        "CREATE TABLE refdata_version (id integer PRIMARY KEY CHECK (id = 1), "
        "version integer NOT NULL)",
        "INSERT INTO refdata_version VALUES (1, abs(random()))",
        *[
            f"CREATE TRIGGER refdata_bump_{table}_{operation.split()[0].lower()} "
            f"AFTER {operation} ON {table} BEGIN {bump} END"
            for table, columns in TABLES.items()
            for operation in (
                "INSERT",
                "DELETE",
                f"UPDATE{' OF ' + ', '.join(columns) if columns else ''}",
            )
        ],
    ]


def drop_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [
            *[
                statement
                for table in TABLES
                for statement in (
                    f"DROP TRIGGER IF EXISTS refdata_bump ON {table}",
                    f"DROP TRIGGER IF EXISTS refdata_bump_truncate ON {table}",
                )
            ],
            "DROP FUNCTION IF EXISTS refdata_version_bump()",
            "DROP TABLE IF EXISTS refdata_version",
            "DROP SEQUENCE IF EXISTS refdata_version_seq",
        ]
    return [
        *[
            f"DROP TRIGGER IF EXISTS refdata_bump_{table}_{operation}"
            for table in TABLES
            for operation in ("insert", "delete", "update")
        ],
        "DROP TABLE IF EXISTS refdata_version",
    ]
