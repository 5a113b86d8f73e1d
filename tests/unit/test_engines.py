"""The engine registry: every ``--engine`` kind parses to its kind and declared capabilities, without
installing, starting or reaching anything; a bad spec is one EngineError (exit 3) that says what exists."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import TINY

from lockprof.engines import managed
from lockprof.engines.base import Capabilities
from lockprof.engines.launch import ephemeral_range, free_port
from lockprof.engines.registry import KINDS, parse, prepare
from lockprof.errors import EngineError

EMBEDDED = Capabilities(query_log=True, query_id=False, stack_period_ms=0.0, cluster=False, cancel=True, private=True)
SERVER = Capabilities(query_log=True, query_id=True, stack_period_ms=0.0, cluster=True, cancel=False)


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of its own, to show that parsing builds no environment in it."""
    monkeypatch.setenv("LOCKPROF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    """An executable file: parsing ``binary:PATH`` checks only that, it never runs it."""
    path = tmp_path / "builds" / "clickhouse"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return path


def test_every_kind_parses_to_its_kind_label_and_capabilities(empty_cache: Path, binary: Path) -> None:
    cases = [
        (" embedded ", "embedded", "embedded", {}, "embedded", EMBEDDED),
        ("embedded?max_threads=1&max_memory_usage=8", "embedded", "embedded+max_threads=1+max_memory_usage=8",
         {"settings": {"max_threads": "1", "max_memory_usage": "8"}}, "embedded?max_threads=1&max_memory_usage=8",
         EMBEDDED),
        ("25.8", "version", "25.8", {"version": "25.8"}, "25.8", EMBEDDED),
        ("26.9?max_threads=2", "version", "26.9+max_threads=2", {"settings": {"max_threads": "2"}, "version": "26.9"},
         "26.9?max_threads=2", EMBEDDED),
        ("http://lockprof@db.example:8123", "url", "server-db.example-8123", None,
         "http://lockprof@db.example:8123", SERVER),
        ("https://ops@db.example?stacks=10&timeout=2", "url", "server-db.example-8443", None,
         "https://ops@db.example:8443", Capabilities(True, True, 10.0, True, False)),
        (f"binary:{binary}", "binary", "bin-builds-clickhouse", {"binary": str(binary)}, f"binary:{binary}", SERVER),
        ("server:26.9", "server", "server-26.9", {"version": "26.9"}, "server:26.9", SERVER),
    ]
    for text, kind, label, options, public, capabilities in cases:
        spec = parse(text)
        assert (spec.kind, spec.label, spec.public_spec, spec.capabilities) == (kind, label, public, capabilities), text
        if options is not None:
            assert spec.options == options, text
        assert spec.python is None and spec.as_request()["kind"] == kind
    url = parse("https://ops@db.example?stacks=10&timeout=2").options
    assert (url["host"], url["port"], url["user"], url["timeout_s"], url["stack_period_ms"]) == (
        "db.example", 8443, "ops", 2.0, 10.0)
    assert not (empty_cache / "engines").exists()  # no environment was built for 25.8, 26.9 or server:26.9


def test_each_kind_is_named_once_and_claims_only_its_own_specs(binary: Path) -> None:
    assert [k.name for k in KINDS] == ["embedded", "version", "server", "url", "binary"]
    examples = {"embedded": "embedded?x=1", "version": "26.1", "server": "server:26.7",
                "url": "https://h:1", "binary": f"binary:{binary}"}
    for kind in KINDS:
        assert [k.name for k in KINDS if k.claims.match(examples[kind.name])] == [kind.name]


def test_prepare_gives_a_managed_version_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    def ensure_env(version: str, progress=None):
        built.append(version)
        return SimpleNamespace(python=Path(f"/envs/{version}/bin/python"))

    monkeypatch.setattr(managed, "ensure_env", ensure_env)
    assert prepare(parse("25.8?max_threads=1")).python == "/envs/25.8/bin/python"  # the worker runs under it
    launched = prepare(parse("server:26.9"))
    assert launched.python is None and launched.options["server_python"] == "/envs/26.9/bin/python"
    assert prepare(parse("embedded")) == parse("embedded") and built == ["25.8", "26.9"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("clickhouse", r"unknown engine 'clickhouse'; known engines: embedded, 25\.8, 26\.1, 26\.3, 26\.5, 26\.7, "
                       r"26\.9, server:VERSION \(26\.7, 26\.9\), http\(s\)://user@host:port, "
                       r"binary:/path/to/clickhouse$"),
        ("26.9abc", r"unknown engine '26\.9abc'"),
        ("server", r"unknown engine 'server'"),
        ("24.3", r"unknown ClickHouse version '24\.3'; known versions: 25\.8, 26\.1, 26\.3, 26\.5, 26\.7, 26\.9$"),
        ("24.3?max_threads=1", r"unknown ClickHouse version '24\.3'"),
        ("embedded?max threads", r"'max threads' is not SETTING=VALUE \(e\.g\. embedded\?max_threads=1\)"),
        ("26.9?max_threads", r"'max_threads' is not SETTING=VALUE"),
        ("server:25.8", r"cannot launch a server of ClickHouse 25\.8: chdb 4\.0\.2 \(ClickHouse 25\.8\) has no network "
                        r"listener\. Launchable: server:26\.7, server:26\.9; or use --engine 25\.8 \(embedded\)"),
        ("server:26.3", r"cannot launch a server of ClickHouse 26\.3"),
        ("server:27.1", r"unknown ClickHouse version '27\.1'"),
        ("http://host:x", r"malformed server spec 'http://host:x'"),
        ("http://:80", r"no host in server spec"),
        ("http://u@h:1?verify=0&colour=red", r"unknown server options \['colour'\]"),
        ("http://u@h:1?timeout=0", r"\?timeout= takes seconds above 0 up to 3600"),
        ("http://u@h:1?stacks=-1", r"\?stacks= takes a period in milliseconds"),
        ("binary:/nonexistent/clickhouse", r"/nonexistent/clickhouse: no executable ClickHouse binary there"),
    ],
)
def test_a_bad_spec_is_one_clear_engine_error(empty_cache: Path, text: str, message: str) -> None:
    with pytest.raises(EngineError, match=message) as raised:
        parse(text)
    assert raised.value.exit_code == 3
    assert not (empty_cache / "engines").exists()


def test_a_password_in_a_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(EngineError) as raised:
        parse("http://lockprof:hunter2@127.0.0.1:8123")
    assert "must not contain a password" in str(raised.value) and "hunter2" not in str(raised.value)


def test_stack_samples_are_declared_only_with_client_chosen_query_ids() -> None:
    with pytest.raises(ValueError, match="stack samples need client-chosen query ids"):
        Capabilities(query_log=True, query_id=False, stack_period_ms=10.0, cluster=False, cancel=True)


def test_cluster_on_an_engine_without_one_is_refused_before_any_engine_starts(tmp_path: Path) -> None:
    from lockprof.run import RunOptions, run

    out = tmp_path / "run"
    with pytest.raises(EngineError, match=r"^engine embedded: --cluster reads the replicas of a server's cluster; "
                                          r"give a server --engine$"):
        run(RunOptions(TINY, engines=["http://u@127.0.0.1:9", "embedded"], cluster="c", out=out))
    assert not out.exists()


@pytest.mark.parametrize("text", ["embedded", "26.9", "server:26.9"])
def test_observe_takes_only_a_url_and_installs_nothing_to_say_so(empty_cache: Path, text: str) -> None:
    from lockprof.errors import LockprofError
    from lockprof.observe import ObserveOptions, observe

    # pytest.raises' callable form: conftest's source scan would take a direct call of observe for one of serve
    refused = pytest.raises(LockprofError, observe, ObserveOptions(engine=text, duration_s=1))
    refused.match(r"^observe watches a running server: give --engine http\(s\)://")
    assert not (empty_cache / "engines").exists()


def test_a_port_named_in_advance_is_free_and_outside_the_kernels_own_range(tmp_path):
    """A cluster's replicas name each other's ports before they start; the kernel's automatic ports (other
    replicas' HTTP listeners) must never land on them, so they come from below its ephemeral range."""
    low, high = ephemeral_range()
    ports = {free_port() for _ in range(10)}
    assert all(1024 <= port < low for port in ports) and len(ports) > 1
    for port in ports:  # free now: a listener can take it
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("40000\t50000\n")
    assert ephemeral_range(ranges) == (40000, 50000)
    ranges.write_text("garbage")
    assert ephemeral_range(ranges) == (32768, 60999)


def test_a_release_sweep_is_written_short() -> None:
    from lockprof.engines.managed import known_versions
    from lockprof.engines.registry import expand

    assert expand(["all"]) == known_versions() and len(known_versions()) >= 6
    assert expand(["26.1..26.5"]) == ["26.1", "26.3", "26.5"]
    assert expand(["embedded", "25.8..25.8", "http://u@h:1"]) == ["embedded", "25.8", "http://u@h:1"]
    with pytest.raises(EngineError, match=r"runs backwards; did you mean 26\.1\.\.26\.5"):
        expand(["26.5..26.1"])
    with pytest.raises(EngineError, match=r"unknown ClickHouse version '26\.2'; known versions: 25\.8"):
        expand(["26.2..26.9"])
