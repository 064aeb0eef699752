"""`serve` reaches no further than the built tables: it is read-only, listens on loopback, and
asks for a login on any other address.

`runner.py serve` subprocesses serve tiny projects; a real JDBC client (PySpark's beeline) sends
the statements. In-process checks of the read-only session cover the statements not worth a
beeline start each.
"""
from __future__ import annotations

import ipaddress
import re
import socketserver
import threading
from pathlib import Path

import pytest

from runner_helpers import write_project
from test_endpoint import (build_tiny_project, free_port, needs_beeline, rows_printed, run_beeline, serving,
                           start_serve, stop, wait_for_banner)
from test_spark_session import listening_sockets

REFUSED = "The SQL endpoint is read-only"


def jvm_of(pid: int) -> int:
    """The Spark JVM that process `pid` (a `runner.py serve`) started."""
    (jvm,) = [child for child in map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
              if Path(f"/proc/{child}/comm").read_text().strip() == "java"]
    return jvm


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


@pytest.fixture(scope="module")
def read_only_served(spark, tmp_path_factory):
    """A served tiny project with the Spark UI turned on: (port, serve process, scratch folder)."""
    needs_beeline()
    base = tmp_path_factory.mktemp("read_only")
    root = build_tiny_project(base / "project", "name: demo\ntargets:\n  local:\n    master: 'local[2]'\n"
                                                "    spark:\n      spark.ui.enabled: 'true'\n")
    port, outside = free_port(), base / "outside"
    outside.mkdir()
    with serving(root, port, base / "cwd", base / "serve.out") as process:
        yield port, process, outside


def test_endpoint_refuses_writes_jvm_calls_and_file_reads_and_still_answers_queries(read_only_served, tmp_path):
    port, _, outside = read_only_served
    secret = outside / "secret.txt"
    secret.write_text("server-side secret\n")
    statements = [
        f"insert overwrite directory '{outside / 'directory'}' using parquet select 1 as a",
        f"create table written using parquet location '{outside / 'table'}' as select 1 as a",
        "select java_method('java.lang.System', 'getProperty', 'java.home') as home",
        "select reflect('java.lang.System', 'getProperty', 'java.home') as home",
        f"select * from text.`{secret}`",
        "create temp view reds as select * from images where label = 'red'",  # allowed: in memory only
        "select count(*) as n_red, max(tensor_shape(image)) as shape from reds",
    ]
    done = run_beeline(port, ";\n".join(statements) + ";\n", script=tmp_path / "statements.sql")
    errors = done.stderr
    assert sum(REFUSED in line for line in errors.splitlines() if line.startswith("Error:")) == 4, errors
    for refused in ("INSERT OVERWRITE DIRECTORY is refused", "CREATE TABLE AS SELECT is refused",
                    "the function java_method (it calls JVM methods) is refused",
                    "the function reflect (it calls JVM methods) is refused"):
        assert refused in errors and "--allow-writes" in errors, errors
    assert "TABLE_OR_VIEW_NOT_FOUND" in errors and "server-side secret" not in done.stdout + errors
    assert not (outside / "directory").exists() and not (outside / "table").exists()
    assert "/jvm" not in done.stdout and "java" not in done.stdout.lower(), done.stdout
    # (beeline -f prints `null` for statements without rows, at times on the line of the next header)
    assert re.search(r"n_red\tshape\s*\n3\t\[3,16,16\]\s*$", done.stdout, re.MULTILINE), done.stdout


def test_settings_passed_in_the_jdbc_url_are_put_back(read_only_served, tmp_path):
    """The Thrift server applies `?key=value` of the URL to the session without parsing a statement."""
    port, _, outside = read_only_served
    secret = outside / "url_secret.txt"
    secret.write_text("server-side secret\n")
    done = run_beeline(port, f"select * from text.`{secret}`", url_tail="?spark.sql.runSQLOnFiles=true")
    assert "the settings spark.sql.runSQLOnFiles were changed and have been put back" in done.stderr, done.stderr
    assert "server-side secret" not in done.stdout
    assert rows_printed(run_beeline(port, "set spark.sql.runSQLOnFiles").stdout)[-1] == \
        ["spark.sql.runSQLOnFiles", "false"]


def test_every_port_of_the_endpoint_is_on_loopback(read_only_served):
    """The Thrift port, Spark's driver ports, its UI (turned on in this project) and py4j's."""
    port, process, _ = read_only_served
    sockets = listening_sockets(jvm_of(process.pid)) | listening_sockets(process.pid)
    assert port in {p for _, p in sockets} and len(sockets) >= 4, sockets  # Thrift, RPC, block manager, UI
    assert all(is_loopback(address) for address, _ in sockets), sockets


def test_read_only_session_allows_reads_and_refuses_the_rest(spark):
    from imageprep.endpoint_guard import read_only_session

    guarded = read_only_session(spark)
    guarded.range(3).createOrReplaceTempView("numbers")
    allowed = ["select sum(id) from numbers", "with t as (select id from numbers) select * from t",
               "show tables", "describe numbers", "explain select 1", "use default", "set",
               "set spark.sql.shuffle.partitions=3", "values (1)", "select * from range(2)",
               "select (select max(id) from numbers)", "from numbers |> where id > 0 |> select id"]
    for sql in allowed:
        guarded.sql(sql).collect()
    refused = {
        "drop view numbers": "DROP VIEW", "add jar /tmp/x.jar": "ADD JAR",
        "select transform(id) using 'cat' from numbers": "SELECT TRANSFORM",
        "set spark.sql.catalog.x=org.example.Catalog": "changing the setting spark.sql.catalog.x",
        "create temporary function f as 'org.example.F'": "CREATE FUNCTION",
        "create global temp view g as select 1": "CREATE GLOBAL TEMP VIEW",
        "execute immediate 'select 1'": "EXECUTE IMMEDIATE", "begin select 1; end": "a SQL script",
        "select * from numbers where exists (select try_reflect('a', 'b'))": "the function try_reflect",
        "select system.builtin.java_method('a', 'b')": "the function system.builtin.java_method",
    }
    for sql, what in refused.items():
        with pytest.raises(Exception, match=what):
            guarded.sql(sql).collect()
    assert spark.sql("select reflect('java.lang.String', 'valueOf', 1)").collect()[0][0] == "1"  # other sessions keep it


def test_serve_on_another_address_needs_authentication(tmp_path):
    root = write_project(tmp_path / "project", {})
    log = tmp_path / "serve.out"
    process = start_serve(root, free_port(), tmp_path / "cwd", log, host="0.0.0.0")
    try:
        assert not wait_for_banner(process, log), f"serve started on 0.0.0.0 without authentication:\n{log.read_text()}"
    finally:
        stop(process)
    assert process.returncode == 2
    assert "--host 0.0.0.0 would let anyone on the network run SQL" in log.read_text()
    assert "hive.server2.authentication" in log.read_text()


class FakeLdap(socketserver.ThreadingTCPServer):
    """An LDAP server that answers simple binds only: success for `user` with `password`."""

    daemon_threads = True

    def __init__(self, user: str, password: str):
        super().__init__(("127.0.0.1", 0), _LdapBind)
        self.user, self.password, self.binds = user, password, []


class _LdapBind(socketserver.BaseRequestHandler):
    def handle(self):
        while message := _read_ber(self.request):
            _, content, _ = _tlv(message)
            _, message_id, rest = _tlv(content)
            operation, body, _ = _tlv(rest)
            if operation != 0x60:  # BindRequest; an UnbindRequest ends the connection
                return
            _, _, body = _tlv(body)  # version
            _, name, body = _tlv(body)
            _, password, _ = _tlv(body)
            self.server.binds.append(name.decode())
            ok = self.server.user in name.decode() and password.decode() == self.server.password
            result = b"\x0a\x01" + bytes([0 if ok else 49]) + b"\x04\x00\x04\x00"  # success / invalidCredentials
            reply = b"\x02" + bytes([len(message_id)]) + message_id + b"\x61" + bytes([len(result)]) + result
            self.request.sendall(b"\x30" + bytes([len(reply)]) + reply)


def _tlv(data: bytes) -> tuple[int, bytes, bytes]:
    """(tag, value, rest) of a BER element at the start of `data`."""
    tag, length, start = data[0], data[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(data[2:2 + count], "big"), 2 + count
    return tag, data[start:start + length], data[start + length:]


def _read_ber(sock) -> bytes:
    head = sock.recv(2)
    if len(head) < 2:
        return b""
    extra = sock.recv(head[1] & 0x7F) if head[1] & 0x80 else b""
    length = int.from_bytes(extra, "big") if extra else head[1]
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return b""
        body += chunk
    return head + extra + body


@pytest.fixture
def ldap():
    server = FakeLdap("alice", "s3cret")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_serve_on_another_address_checks_users_with_ldap(spark, ldap, tmp_path):
    """... here with --allow-writes too, which lifts the read-only checks."""
    needs_beeline()
    ldap_url = f"ldap://127.0.0.1:{ldap.server_address[1]}"
    root = write_project(tmp_path / "project", {"project.yml": f"""
        name: demo
        targets:
          local:
            master: 'local[2]'
            spark:
              spark.hadoop.hive.server2.authentication: LDAP
              spark.hadoop.hive.server2.authentication.ldap.url: '{ldap_url}'
              spark.hadoop.hive.server2.authentication.ldap.baseDN: 'ou=people,dc=example,dc=org'
    """})
    port = free_port()
    with serving(root, port, tmp_path / "cwd", tmp_path / "serve.out", host="0.0.0.0", allow_writes=True) as process:
        sql = "select reflect('java.lang.String', 'valueOf', 1) as one"
        wrong = run_beeline(port, sql, "-n", "alice", "-p", "wrong")
        assert wrong.returncode != 0 and "one" not in wrong.stdout, wrong.stdout + wrong.stderr
        right = run_beeline(port, sql, "-n", "alice", "-p", "s3cret")
        assert right.returncode == 0 and rows_printed(right.stdout) == [["one"], ["1"]], right.stdout + right.stderr
        assert ldap.binds and all(bind == "uid=alice,ou=people,dc=example,dc=org" for bind in ldap.binds), ldap.binds
        assert "users checked by LDAP" in (tmp_path / "serve.out").read_text()
        # Only the Thrift port is on every address; Spark's own stay on loopback.
        sockets = listening_sockets(jvm_of(process.pid)) | listening_sockets(process.pid)
        assert {(address, p) for address, p in sockets if p == port} in ({("0.0.0.0", port)}, {("::", port)}), sockets
        assert all(is_loopback(address) for address, p in sockets if p != port), sockets
