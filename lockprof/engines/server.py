"""The server engine: a real ClickHouse server over HTTP(S), through clickhouse-connect.

A spec is ``http://user@host:port`` or ``https://user@host:port`` with optional
URL options ``verify=0``, ``ca=PATH`` (TLS), ``timeout=S`` (connect timeout),
``password_file=PATH`` and ``stacks=MS`` (query profiler period for stack
samples). The password is never part of the spec: the worker reads it from
``LOCKPROF_PASSWORD`` or the file named by ``password_file`` /
``LOCKPROF_PASSWORD_FILE`` in its own environment, so it never crosses a pipe,
an argv or a file that lockprof writes.

Every scenario query gets the driver's id both as the server's ``query_id`` and
as ``log_comment``, so the query-log reader that matches on ``log_comment``
works unchanged. :mod:`lockprof.engines.guard` keeps DDL and INSERTs inside
databases lockprof created.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

from lockprof.engines.base import Capabilities, EngineInfo, EngineSpec
from lockprof.engines.guard import Guard
from lockprof.errors import EngineError

MIN_VERSION = (22, 8)  # the oldest release clickhouse-connect's start-up queries work on
DEFAULT_TIMEOUT_S = 5.0
SPEC_OPTIONS = {"verify", "ca", "timeout", "password_file", "stacks"}
AUTH_CODES = {"516", "192", "193", "194"}  # AUTHENTICATION_FAILED, UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD


@dataclass(frozen=True)
class ServerTarget:
    """Where the server is and how to talk to it; everything here may be written to disk."""

    scheme: str
    user: str
    host: str
    port: int
    verify: bool = True
    ca_file: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    password_file: str | None = None
    stack_period_ms: float = 0.0
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def public_spec(self) -> str:
        return f"{self.scheme}://{self.user}@{self.address}"

    def as_request(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme, "user": self.user, "host": self.host, "port": self.port, "verify": self.verify,
            "ca_file": self.ca_file, "timeout_s": self.timeout_s, "password_file": self.password_file,
            "stack_period_ms": self.stack_period_ms, "settings": dict(self.settings),
        }

    @classmethod
    def from_request(cls, req: dict[str, Any]) -> ServerTarget:
        return cls(**{k: req[k] for k in cls.__dataclass_fields__ if k in req})


def declared(stack_period_ms: float = 0.0) -> Capabilities:
    """What every server engine can do (URL, launched binary, launched server); stacks only when asked for."""
    return Capabilities(query_log=True, query_id=True, stack_period_ms=stack_period_ms, cluster=True, cancel=False)


def parse_spec(text: str) -> EngineSpec:
    """``http(s)://user@host:port[?options]`` -> an EngineSpec; its public_spec never holds a password."""
    target = parse_url(text)
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", f"server-{target.host}-{target.port}")
    return EngineSpec("url", label, target.as_request(), target.public_spec, declared(target.stack_period_ms))


def open_engine(request: dict[str, Any]) -> ServerEngine:
    """The worker's entry: the request carries the target, the password comes from the environment."""
    return ServerEngine(ServerTarget.from_request(request))


def parse_url(text: str) -> ServerTarget:
    """``http(s)://user@host:port[?options]`` -> ServerTarget; a password in the URL is refused."""
    try:
        parts = urlsplit(text)
        parts.port, parts.hostname, parts.username  # noqa: B018  (they parse lazily; a bad one raises here)
    except ValueError as exc:
        raise EngineError(f"malformed server spec {text!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise EngineError(f"a server spec starts with http:// or https://, got {parts.scheme!r}")
    if parts.password is not None:
        # Never echo it: the message names the problem only.
        raise EngineError("a server spec must not contain a password; put it in LOCKPROF_PASSWORD "
                          "or in a file named by LOCKPROF_PASSWORD_FILE")
    if not parts.hostname:
        raise EngineError(f"no host in server spec {text!r}")
    try:
        port = parts.port or (8443 if parts.scheme == "https" else 8123)
    except ValueError:
        raise EngineError(f"bad port in server spec {text!r}") from None
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - SPEC_OPTIONS
    if unknown:
        raise EngineError(f"unknown server options {sorted(unknown)}; known: {', '.join(sorted(SPEC_OPTIONS))}")
    try:
        target = ServerTarget(
            scheme=parts.scheme,
            user=parts.username or "default",
            host=parts.hostname,
            port=port,
            verify=options.get("verify", "1").lower() not in ("0", "false", "no"),
            ca_file=options.get("ca") or None,
            timeout_s=float(options.get("timeout", DEFAULT_TIMEOUT_S)),
            password_file=options.get("password_file") or None,
            stack_period_ms=float(options.get("stacks", 0)),
        )
    except ValueError as exc:
        raise EngineError(f"bad option in server spec: {exc}") from None
    if not (math.isfinite(target.timeout_s) and 0 < target.timeout_s <= 3600):
        raise EngineError(f"?timeout= takes seconds above 0 up to 3600, got {options.get('timeout')!r}")
    if not (math.isfinite(target.stack_period_ms) and target.stack_period_ms >= 0):
        raise EngineError(f"?stacks= takes a period in milliseconds (0 = off), got {options.get('stacks')!r}")
    return target


def read_password(password_file: str | None = None) -> str:
    """The password from the file named here, else LOCKPROF_PASSWORD, else the file LOCKPROF_PASSWORD_FILE names."""
    if not password_file and (value := os.environ.get("LOCKPROF_PASSWORD")) is not None:
        return value
    path = password_file or os.environ.get("LOCKPROF_PASSWORD_FILE")
    if not path:
        return ""
    try:
        return Path(path).expanduser().read_text().rstrip("\r\n")
    except OSError as exc:
        raise EngineError(f"cannot read the password file {path}: {exc.strerror}") from None


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split(".")[:2] if x.isdigit())


def probe(target: ServerTarget, password: str) -> str:
    """Ask the server for its version with a bounded timeout; turn each failure into advice.

    This runs before clickhouse-connect, whose own start-up queries fail on old
    servers with an error that does not say the server is too old.
    """
    import urllib3

    kwargs: dict[str, Any] = {"timeout": urllib3.Timeout(connect=target.timeout_s, read=target.timeout_s),
                              "retries": False}
    if target.scheme == "https":
        kwargs["cert_reqs"] = "CERT_REQUIRED" if target.verify else "CERT_NONE"
        if target.ca_file:
            kwargs["ca_certs"] = target.ca_file
    headers = urllib3.make_headers(basic_auth=f"{target.user}:{password}")
    url = f"{target.scheme}://{target.address}/?query=SELECT%20version()"
    with urllib3.PoolManager(**kwargs) as http:
        try:
            response = http.request("GET", url, headers=headers)
        except urllib3.exceptions.SSLError as exc:
            raise EngineError(
                f"TLS with {target.address} failed ({_reason(exc)}). If the server uses a private CA, add "
                "?ca=PATH to the spec; ?verify=0 skips verification (test servers only); a plain HTTP port "
                "needs http://"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise EngineError(
                f"cannot reach ClickHouse at {target.address} within {target.timeout_s:g} s ({_reason(exc)}). "
                "Check that the server runs, and that host and port are its HTTP(S) interface (usually 8123 "
                "or 8443); ?timeout=S allows a slower network"
            ) from None
    code = response.headers.get("X-ClickHouse-Exception-Code")
    body = response.data.decode(errors="replace").strip()
    if code in AUTH_CODES or response.status == 401:
        raise EngineError(
            f"ClickHouse at {target.address} refused user {target.user!r}: wrong or missing password. Set "
            "LOCKPROF_PASSWORD, or LOCKPROF_PASSWORD_FILE / ?password_file=PATH naming a file that holds it"
        )
    if response.status != 200 or code:
        first = body.splitlines()[0][:300] if body else f"HTTP {response.status}"
        raise EngineError(f"ClickHouse at {target.address} answered with an error: {first}")
    if not version_tuple(body) or len(version_tuple(body)) < 2:
        raise EngineError(f"{target.address} does not answer like ClickHouse's HTTP interface (got {body[:80]!r})")
    if version_tuple(body) < MIN_VERSION:
        raise EngineError(
            f"ClickHouse {body} at {target.address} is too old: lockprof's client (clickhouse-connect) needs "
            f"{'.'.join(map(str, MIN_VERSION))} or newer. Upgrade the server, or use --engine embedded / a version spec"
        )
    return body


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    return text.split(": ", 1)[-1][:200] if "Errno" in text or ">:" in text else text[:200]


class ServerConnection:
    """One clickhouse-connect client: lockprof uses each connection from one thread at a time."""

    def __init__(self, engine: ServerEngine, client: Any) -> None:
        self._engine = engine
        self._client = client

    def execute(
        self,
        sql: str,
        params: dict[str, Any] | None = None,
        query_id: str | None = None,
        settings: dict[str, Any] | None = None,
        log_tag: str | None = None,  # noqa: ARG002  (a server takes each query's id: no tag needed)
    ) -> None:
        self._engine.guard.check(sql, params)
        settings = {**self._engine.query_settings, **(settings or {})}
        if query_id:
            settings.update(self._engine.profile_settings)
            settings.update(query_id=query_id, log_comment=query_id)
        self._client.command(sql, parameters=params or None, settings=settings)
        self._engine.guard.after(sql)

    def frame(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        self._engine.guard.check(sql)
        return self._client.query_df(sql, parameters=params or None, settings=dict(self._engine.query_settings))

    def close(self) -> None:
        self._client.close()


class ServerEngine:
    """A ClickHouse server; ``readonly`` makes every query carry ``readonly = 2`` and refuses writes here too.

    2, not 1: a real server under ``readonly = 1`` also refuses the per-query settings the samplers send
    (code 164 for ``system_events_show_zero_values``); under 2 it still refuses every write with code 164.
    """

    def __init__(self, target: ServerTarget, password: str | None = None, readonly: bool = False) -> None:
        self.target = target
        self._password = read_password(target.password_file) if password is None else password
        self.version = probe(target, self._password)
        self.readonly = readonly
        self.query_settings: dict[str, str] = dict(target.settings)
        if readonly:
            self.query_settings["readonly"] = "2"
        self.profile_settings = stack_settings(target.stack_period_ms)
        self._lock = threading.Lock()
        self._connections: list[ServerConnection] = []
        self._info: EngineInfo | None = None
        self._capabilities: Capabilities | None = None
        self._admin = self.connect()
        self.guard = Guard(self._admin, readonly=readonly)

    def connect(self) -> ServerConnection:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError

        t = self.target
        try:
            client = clickhouse_connect.get_client(
                host=t.host, port=t.port, username=t.user, password=self._password,
                secure=t.scheme == "https", verify=t.verify, ca_cert=t.ca_file,
                connect_timeout=t.timeout_s, send_receive_timeout=300, autogenerate_session_id=False,
                settings=dict(self.query_settings), client_name="lockprof",
            )
        except ClickHouseError as exc:
            raise EngineError(f"ClickHouse at {t.address}: {_first_line(exc)}") from None
        conn = ServerConnection(self, client)
        with self._lock:
            self._connections.append(conn)
        return conn

    @property
    def admin(self) -> ServerConnection:
        """The connection lockprof itself uses for DDL and system tables."""
        return self._admin

    @property
    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = replace(declared(self.target.stack_period_ms), query_log=self._probe_query_log())
        return self._capabilities

    def info(self) -> EngineInfo:
        if self._info is None:
            self._info = EngineInfo(
                kind="server",
                clickhouse_version=self.version,
                package=f"server {self.target.address}",
                has_query_log=self.capabilities.query_log,
            )
        return self._info

    def _probe_query_log(self) -> bool:
        """A server may run without query_log, or deny reading it; find out rather than assume.

        A fresh server creates its log tables at their first flush, so one is asked for before
        concluding there is none (not in read-only mode, which sends nothing but reads)."""
        exists = "SELECT count() AS n FROM system.tables WHERE database = 'system' AND name = 'query_log'"
        try:
            if int(self._admin.frame(exists)["n"].iloc[0]) == 0 and not self.readonly:
                with contextlib.suppress(Exception):  # a user without SYSTEM FLUSH LOGS: the answer stays no
                    self._admin.execute("SYSTEM FLUSH LOGS")
            if int(self._admin.frame(exists)["n"].iloc[0]) == 0:
                return False
            self._admin.frame("SELECT query_id FROM system.query_log LIMIT 0")
            return True
        except Exception:
            return False

    def check_introspection(self) -> None:
        """Stack symbolization needs the INTROSPECTION grant and reading system.trace_log."""
        try:
            self._admin.frame("SELECT demangle(addressToSymbol(toUInt64(0))) AS s "
                              "SETTINGS allow_introspection_functions = 1")
            self._admin.frame("SELECT trace FROM system.trace_log LIMIT 0")
        except Exception as exc:
            raise EngineError(
                f"user {self.target.user!r} on {self.target.address} cannot read symbolized stacks "
                f"({_first_line(exc)}). Grant it: GRANT INTROSPECTION, SELECT ON system.trace_log TO "
                f"{self.target.user}; or run without stack sampling"
            ) from None

    def close(self) -> None:
        with self._lock:
            conns, self._connections = self._connections, []
        for conn in conns:
            with contextlib.suppress(Exception):  # best effort; the server drops idle connections itself
                conn.close()


def stack_settings(period_ms: float) -> dict[str, str]:
    """Query-level settings that make the server sample a query's stacks into system.trace_log."""
    if period_ms <= 0:
        return {}
    ns = str(int(period_ms * 1_000_000))
    return {"query_profiler_real_time_period_ns": ns, "query_profiler_cpu_time_period_ns": ns,
            "trace_profile_events": "1"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for marker in ("server response: ", "DB::Exception: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.splitlines()[0][:300] if text else type(exc).__name__

