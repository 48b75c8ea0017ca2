"""`[mongo] write_concern` and retryable writes.

These run against the single-node MongoDB-compatible server (no replica set here): they show
that the configured concern reaches the driver, is sent with every write and is accepted, not
that a majority of a replica set acknowledged anything. Against a real replica set
(MONGO_URL=mongodb://db1,db2,db3/?replicaSet=rs0) the same tests run unchanged.
"""

from __future__ import annotations

import pytest

from server.config import ConfigError, MongoConfig, from_dict
from server.position import Position
from server.store.mongo import MongoStore, write_concern
from tests.fixtures.mongo import drop_database, fresh_config

RS_URL = "mongodb://db1:27017,db2:27017,db3:27017/?replicaSet=rs0"


def test_a_replica_set_url_gets_majority_by_default() -> None:
    assert write_concern(MongoConfig(url=RS_URL)) == {"w": "majority"}
    assert write_concern(MongoConfig(url="mongodb://db1/?replicaset=rs0")) == {"w": "majority"}
    assert write_concern(MongoConfig(url="mongodb://127.0.0.1:27017/")) == {}
    assert write_concern(MongoConfig(url=RS_URL, write_concern="2")) == {"w": 2}
    assert write_concern(MongoConfig(url="mongodb://h/", write_concern="majority")) == {
        "w": "majority"
    }


@pytest.mark.parametrize("value", ["0", "all", "-1", "1.5"])
def test_an_impossible_write_concern_stops_start_up(value: str) -> None:
    with pytest.raises(ConfigError, match="mongo.write_concern"):
        from_dict({"mongo": {"write_concern": value}}, dev=True)


@pytest.mark.asyncio
async def test_writes_carry_the_configured_concern_and_retry(mongo_url: str) -> None:
    config = fresh_config(mongo_url, write_concern="majority")
    store = MongoStore(config)
    await store.start()
    try:
        client = store._db.client  # the driver's own view of what it sends
        assert client.write_concern.document == {"w": "majority"}
        assert client.options.retry_writes is True
        await store.append("c", "e1", 1, b'{"data":1}', 10, 60)
        await store.reserve("c", "e1", 5)
        assert await store.history("c", "e1", None, 10, False) == [(1, b'{"data":1}')]
        assert await store.position("c") == Position(5, "e1")
    finally:
        await store.close()
        await drop_database(config)
