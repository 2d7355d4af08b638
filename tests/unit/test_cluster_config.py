"""Given a cluster URL or a scale-out option, the store is wired to it, or ConfigError says why."""

from __future__ import annotations

from pathlib import Path

import pytest

import persistio as pio
from persistio.backends.redis.client import parse_cluster_url
from persistio.config.urls import masked, split_urls

SETTING = "transitory (Persistio(transitory=...) or PERSISTIO_TRANSITORY_URL)"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", r"a host is missing"),
        ("redis+cluster:///", r"a host is missing"),
        ("redis+cluster://h1/", r"'h1' is not host:port"),
        ("redis+cluster://h1:7000,,h2:7001/", r"a host is missing"),
        ("redis+cluster://h1:70000/", r"bad port in 'h1:70000'"),
        ("redis+cluster://h1:port/", r"bad port"),
        ("redis+cluster://h1:7000/3", r"database 0 only, not '/3'"),
        ("redis+cluster://h1:7000/?timeout=1", r"no options"),
        ("redis+cluster://u:s3cret@h1:7000/db", r"database 0 only"),
    ],
)
def test_a_bad_cluster_url_is_a_config_error_naming_the_setting(
    url: str, message: str, tmp_path: Path
) -> None:
    # When a malformed redis+cluster URL is given
    with pytest.raises(pio.ConfigError, match=message) as caught:
        pio.Persistio(transitory=url, data_dir=tmp_path)
    # Then the error names the setting, shows the form to use, and never the password
    assert str(caught.value).startswith(SETTING)
    assert "redis+cluster://host:port[,host:port...]/" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_a_cluster_url_parses_hosts_credentials_and_tls() -> None:
    ep = parse_cluster_url("rediss+cluster://app:p%40ss@h1:7000,[::1]:7001,h3:7002/0", "x")
    assert ep.hosts == (("h1", 7000), ("::1", 7001), ("h3", 7002))
    assert (ep.username, ep.password, ep.tls) == ("app", "p@ss", True)
    assert "p@ss" not in repr(ep)


def test_a_cluster_url_is_one_backend_for_both_redis_tiers_and_connects_on_use(
    tmp_path: Path,
) -> None:
    # Given a store on a cluster nobody runs (port 1)
    url = "redis+cluster://127.0.0.1:1,127.0.0.1:2/"
    with pio.Persistio(transitory=url, volatile=url, data_dir=tmp_path, connect_timeout=0.5) as s:
        # Then building it made no connection, and both tiers share one backend
        status = s.status()
        backends = status["backends"]
        assert backends["transitory"]["url"] == url
        assert "transitory/volatile" in status["group_commit"]
        # And the unreachable cluster shows as unhealthy, not as a crash
        assert backends["transitory"]["healthy"] is False
        assert "unavailable" in backends["transitory"]["error"]


def test_a_host_list_is_not_a_failover_list() -> None:
    # Given a cluster URL (commas between hosts) and a failover list (commas between URLs)
    cluster = "redis+cluster://h1:7000,h2:7001/"
    assert split_urls(cluster) == [cluster]
    assert split_urls(f"redis://a:1/0, {cluster}") == ["redis://a:1/0", cluster]
    # Then passwords are masked in both
    assert masked("redis+cluster://u:s3cret@h1:7000,h2:7001/") == (
        "redis+cluster://u:***@h1:7000,h2:7001/"
    )
    assert "s3cret" not in masked("redis://u:s3cret@a:1/0,redis+cluster://u:s3cret@h:2/")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task_queues": pio.TaskQueues(partitions=0)}, r"queue_partitions=0\): use an int from 1"),
        ({"task_queues": pio.TaskQueues(partitions=300)}, r"use an int from 1 to 256"),
        ({"queue_replicas": -1}, r"Persistio\(queue_replicas=-1\): use an int from 0 to 16"),
        ({"task_queues": pio.TaskQueues(visibility=0)}, r"visibility=0\): use seconds > 0"),
        ({"task_queues": {"partitions": 2}}, r"use pio.TaskQueues"),
        (
            {"task_queues": pio.TaskQueues(), "queue_partitions": 2},
            r"both set task_queues.partitions",
        ),
    ],
)
def test_bad_queue_settings_raise_config_error(
    kwargs: dict[str, object], message: str, tmp_path: Path
) -> None:
    with pytest.raises(pio.ConfigError, match=message):
        pio.Persistio(data_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
