"""A small ClickHouse-HTTP-compatible endpoint answering with the embedded chDB engine.

A test fixture, not a feature: it lets the real clickhouse-connect client talk
to real ClickHouse SQL without a server package. It speaks enough of the HTTP
interface for clickhouse-connect and lockprof: the query in the URL and/or
body, ``query_id``, ``database``, ``param_*`` query parameters, settings as URL
parameters, basic auth (a wrong password gets code 516 AUTHENTICATION_FAILED),
``readonly`` (non-reading statements get code 164 READONLY, as a server would
refuse them), ``/ping``. Output is whatever chDB produces for the query's
``FORMAT`` clause, which is what a server would send.

chDB hosts one engine per process, so the endpoint runs in its own process with
its own data directory: ``python tests/chhttp.py DATA_DIR`` prints ``PORT <n>``
once it listens. The password comes from ``CHHTTP_PASSWORD`` in its environment.
:func:`serve` does all that for a test.

Clusters (``CHHTTP_CLUSTER=NAME``): the config gets a ``remote_servers`` entry
NAME with two replicas that both point back at this same engine, so
``system.clusters`` lists it and chDB itself runs ``clusterAllReplicas('NAME', …)``
(both "replicas" are local; ``hostName()`` is the same on both). With
``CHHTTP_REPLICAS=a,b`` the endpoint also *emulates* two distinct replicas: it
rewrites ``clusterAllReplicas('NAME', view(SELECT …))`` into a UNION ALL of that
SELECT once per replica name, with ``hostName()`` / ``FQDN()`` replaced by the
name. This is a fixture limitation, not a cluster: both replicas are the one
engine, so their counters and logs are the same rows under two names, nothing
is sent over the network, and only the ``view(…)`` form lockprof generates is
rewritten.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

USER = "lockprof"
LIMITED = "limited"  # same password, but no INTROSPECTION grant and no access to system.trace_log
# URL parameters that steer the HTTP layer rather than being query settings.
TRANSPORT = {
    "query", "database", "query_id", "session_id", "session_timeout", "session_check", "compress", "decompress",
    "user", "password", "quota_key", "buffer_size", "wait_end_of_query", "default_format", "client_protocol_version",
    "enable_http_compression", "send_progress_in_http_headers", "http_headers_progress_interval_ms", "readonly",
    "role", "cancel_http_readonly_queries_on_client_close", "http_zlib_compression_level",
}
READING = re.compile(r"^\s*(\(\s*)*(SELECT|WITH|SHOW|DESC|DESCRIBE|EXISTS|EXPLAIN)\b", re.IGNORECASE)
FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
CODE = re.compile(r"Code: (\d+)")
CONFIG = """<clickhouse>
{remote_servers}
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </query_log>
    <trace_log>
        <database>system</database>
        <table>trace_log</table>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </trace_log>
</clickhouse>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Endpoint

    def log_message(self, fmt: str, *args: object) -> None:  # quiet: tests read stderr
        if os.environ.get("CHHTTP_VERBOSE"):
            sys.stderr.write(f"chhttp: {self.command} {self.path[:300]}\n")

    def do_GET(self) -> None:
        if urlsplit(self.path).path.rstrip("/") == "/ping":
            self._reply(200, b"Ok.\n", {})
            return
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _handle(self, body: bytes) -> None:
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        if not self._authenticated(params):
            self._error(516, f"{self._user(params)}: Authentication failed: password is incorrect, or there is no "
                             "user with such name. (AUTHENTICATION_FAILED)", status=401)
            return
        sql = "\n".join(x for x in (params.get("query", ""), body.decode()) if x.strip())
        query_id = params.get("query_id") or str(uuid.uuid4())
        if self._user(params) == LIMITED and re.search(r"addressToSymbol|trace_log", sql):
            self._error(497, f"{LIMITED}: Not enough privileges. To execute this query, it's necessary to have the "
                             "grant INTROSPECTION ON *.*. (ACCESS_DENIED)", status=403, query_id=query_id)
            return
        readonly = params.get("readonly", "0") not in ("", "0")
        if readonly and not READING.match(_strip_comments(sql)):
            self._error(164, f"{self._user(params)}: Cannot execute query in readonly mode. (READONLY)", status=403,
                        query_id=query_id)
            return
        fmt_match = FORMAT.search(sql)
        fmt = fmt_match.group(1) if fmt_match else params.get("default_format", "TabSeparated")
        settings = {k: v for k, v in params.items() if k not in TRANSPORT and not k.startswith("param_")}
        query_params = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
        try:
            data = self.server.run(sql, fmt, params.get("database"), settings, query_params)
        except Exception as exc:
            text = str(exc)
            code = int(m.group(1)) if (m := CODE.search(text)) else 1001
            self._error(code, re.sub(r"^Code: \d+\. DB::Exception: ", "", text), query_id=query_id)
            return
        headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Summary": json.dumps({"read_rows": "0", "written_rows": "0", "result_rows": "0"}),
            "Content-Type": "application/octet-stream",
        }
        self._reply(200, data, headers)

    def _user(self, params: dict[str, str]) -> str:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            return base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        return self.headers.get("X-ClickHouse-User") or params.get("user") or "default"

    def _authenticated(self, params: dict[str, str]) -> bool:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        else:
            user = self.headers.get("X-ClickHouse-User") or params.get("user") or "default"
            password = self.headers.get("X-ClickHouse-Key") or params.get("password") or ""
        return user in (USER, LIMITED) and password == self.server.password

    def _error(self, code: int, message: str, status: int = 500, query_id: str = "") -> None:
        body = f"Code: {code}. DB::Exception: {message} (version {self.server.version})\n".encode()
        headers = {"X-ClickHouse-Exception-Code": str(code), "Content-Type": "text/plain; charset=UTF-8"}
        if query_id:
            headers["X-ClickHouse-Query-Id"] = query_id
        self._reply(status, body, headers)

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.DOTALL)


class Endpoint(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, data_dir: Path, password: str) -> None:
        import chdb

        super().__init__(("127.0.0.1", 0), Handler)
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir / "config.xml"
        cluster = os.environ.get("CHHTTP_CLUSTER", "")
        config.write_text(CONFIG.replace("{remote_servers}", REMOTE_SERVERS.format(name=cluster) if cluster else ""))
        self.cluster = cluster
        self.replicas = [r for r in os.environ.get("CHHTTP_REPLICAS", "").split(",") if r]
        self.dsn = f"{data_dir / 'data'}?config-file={config}"
        self.password = password
        self._chdb = chdb
        self._keep = chdb.connect(self.dsn)  # holds the engine open between requests
        self.version = self._keep.query("SELECT version()", "TabSeparated").bytes().decode().strip()
        self._lock = threading.Lock()

    def run(self, sql: str, fmt: str, database: str | None, settings: dict[str, str], params: dict[str, str]) -> bytes:
        """One request on a fresh chDB connection: a session of its own, as an HTTP query has."""
        conn = self._chdb.connect(self.dsn)
        try:
            if database:
                conn.query(f"USE {database}")
            for key, value in settings.items():
                conn.query(f"SET {key} = '{_escape(value)}'")
            if self.cluster and self.replicas:
                sql = emulate_replicas(sql, self.cluster, self.replicas)
            return conn.query(sql, fmt, params=params or None).bytes()
        finally:
            conn.close()


REMOTE_SERVERS = """    <tcp_port>9000</tcp_port>
    <remote_servers>
        <{name}>
            <shard>
                <replica><host>localhost</host><port>9000</port></replica>
                <replica><host>127.0.0.1</host><port>9000</port></replica>
            </shard>
        </{name}>
    </remote_servers>"""
_HOST = re.compile(r"\b(hostName|FQDN|displayName)\(\)", re.IGNORECASE)


def emulate_replicas(sql: str, cluster: str, replicas: list[str]) -> str:
    """``clusterAllReplicas('cluster', view(SELECT …))`` -> the SELECT once per replica name, UNION ALL."""
    head = re.compile(r"clusterAllReplicas\(\s*'" + re.escape(cluster) + r"'\s*,\s*view\(", re.IGNORECASE)
    while match := head.search(sql):
        start, depth, quoted, i = match.end(), 1, False, match.end()
        while depth:  # the view's closing parenthesis, skipping string literals
            ch = sql[i]
            if ch == "'" and sql[i - 1] != "\\":
                quoted = not quoted
            elif not quoted:
                depth += {"(": 1, ")": -1}.get(ch, 0)
            i += 1
        inner = sql[start:i - 1]
        close = sql.index(")", i)  # clusterAllReplicas's own
        union = " UNION ALL ".join(f"SELECT * FROM ({_HOST.sub(_quote(r), inner)})" for r in replicas)
        sql = sql[:match.start()] + f"({union})" + sql[close + 1:]
    return sql


def _quote(name: str) -> str:
    return "'" + _escape(name) + "'"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def main() -> int:
    endpoint = Endpoint(Path(sys.argv[1]), os.environ.get("CHHTTP_PASSWORD", ""))
    print(f"PORT {endpoint.server_address[1]}", flush=True)
    endpoint.serve_forever()
    return 0


@dataclass
class Served:
    port: int
    password: str
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{USER}@127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve(data_dir: Path, password: str, cluster: str = "", replicas: tuple[str, ...] = ()) -> Iterator[Served]:
    """Run the endpoint in its own process for the duration of the ``with`` block (``cluster``, ``replicas``:
    see the module docstring)."""
    env = {**os.environ, "CHHTTP_PASSWORD": password, "CHHTTP_CLUSTER": cluster, "CHHTTP_REPLICAS": ",".join(replicas)}
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), str(data_dir)],
        stdout=subprocess.PIPE, env=env, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"chhttp endpoint did not start (exit {proc.wait(timeout=10)})")
        yield Served(int(line.split()[1]), password, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def client_load(served: Served) -> Iterator[None]:
    """Another client's small queries against the endpoint while the block runs, for observe to see."""
    import time

    import clickhouse_connect

    stop = threading.Event()

    def loop() -> None:
        client = clickhouse_connect.get_client(host="127.0.0.1", port=served.port, username=USER,
                                               password=served.password, autogenerate_session_id=False)
        while not stop.is_set():
            client.query("SELECT count() FROM numbers(10000)")
            time.sleep(0.02)
        client.close()

    loader = threading.Thread(target=loop)
    loader.start()
    try:
        yield
    finally:
        stop.set()
        loader.join()


if __name__ == "__main__":
    sys.exit(main())
