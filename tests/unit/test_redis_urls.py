from tradingsite.redis_urls import broker_url, redis_db, with_db


def test_tcp_urls():
    assert redis_db("redis://127.0.0.1:6379/10") == 10
    assert redis_db("redis://127.0.0.1:6379") == 0
    assert with_db("redis://h:6379/10", 11) == "redis://h:6379/11"
    assert broker_url("redis://:secret@h:6379/4") == "redis://:secret@h:6379/5"


def test_unix_socket_urls():
    url = "unix:///tmp/x/redis.sock?db=10"
    assert redis_db(url) == 10
    assert with_db(url, 3) == "unix:///tmp/x/redis.sock?db=3"
    assert broker_url(url) == "redis+socket:///tmp/x/redis.sock?virtual_host=11"
    assert redis_db("unix:///tmp/x/redis.sock") == 0
