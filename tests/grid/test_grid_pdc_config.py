"""labkit.grid.pdc_config: PDC configuration from files and from a MySQL-protocol database."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit.grid.pdc_config import PdcConfigError, from_mapping, load_config, read_mysql, to_mapping, write_mysql

pytestmark = pytest.mark.unit

GOOD = {"name": "pdc-low-1", "idcode": 100, "wait_window_ms": 80, "output_port": 4800, "rate": 30,
        "inputs": [{"name": "pmu-a", "host": "127.0.0.1", "port": 4712, "idcode": 1},
                   {"name": "pmu-b", "host": "127.0.0.1", "port": 4713, "idcode": 10}]}


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".toml"])
def test_config_files_load(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"pdc{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(GOOD))
    elif suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(GOOD))
    else:
        lines = [f'name = "{GOOD["name"]}"', "idcode = 100", "wait_window_ms = 80", "output_port = 4800", "rate = 30"]
        for i in GOOD["inputs"]:
            lines += ["[[inputs]]", f'name = "{i["name"]}"', f'host = "{i["host"]}"', f"port = {i['port']}",
                      f"idcode = {i['idcode']}"]
        path.write_text("\n".join(lines))
    cfg = load_config(path)
    assert cfg.wait_window == pytest.approx(0.08) and cfg.output_port == 4800
    assert [i.port for i in cfg.inputs] == [4712, 4713] and cfg.inputs[1].idcode == 10
    assert from_mapping(to_mapping(cfg)) == cfg


@pytest.mark.parametrize("patch, message", [
    ({"idcode": "x"}, "field 'idcode' must be an integer"),
    ({"idcode": 70000}, "field 'idcode' must be in"),
    ({"inputs": []}, "field 'inputs' must be a non-empty list"),
    ({"inputs": [{"host": "h", "port": 99999, "idcode": 1}]}, r"inputs\[0\]: field 'port' must be in"),
    ({"inputs": [{"port": 1, "idcode": 1}]}, r"inputs\[0\]: missing field 'host'"),
    ({"wait_window_ms": -5}, "wait window"),
    ({"rate": 0}, "field 'rate'"),
    ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
    ({"inputs": [GOOD["inputs"][0], GOOD["inputs"][0]]}, "duplicate name"),
])
def test_bad_config_gives_one_clear_error(patch: dict, message: str) -> None:
    with pytest.raises(PdcConfigError, match=message):
        from_mapping({**GOOD, **patch})


def test_bad_files_and_urls(tmp_path: Path) -> None:
    with pytest.raises(PdcConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PdcConfigError, match="not valid json"):
        load_config(bad)
    with pytest.raises(PdcConfigError, match=r"missing '\?name=<pdc name>'"):
        load_config("mysql://u:secret@127.0.0.1:1/labkit")
    with pytest.raises(PdcConfigError, match="cannot connect") as err:
        load_config(f"mysql://u:secret@127.0.0.1:{_free_port()}/labkit?name=x")
    assert "secret" not in str(err.value)


def test_pdc_cli_prints_one_error_for_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "pdc.json"
    bad.write_text(json.dumps({**GOOD, "rate": "fast"}))
    proc = subprocess.run([sys.executable, "-m", "labkit.grid.pdc", "--config", str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout.strip() == f"error: config file {bad}: field 'rate' must be an integer, got 'fast'"
    assert "Traceback" not in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory):
    """A throw-away MariaDB server on loopback (the Galera nodes of the testbed run the same server)."""
    server = shutil.which("mariadbd") or shutil.which("mysqld")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if not server or not install:
        pytest.skip("MariaDB server binaries not installed")
    root = tmp_path_factory.mktemp("mariadb")
    data = root / "data"
    subprocess.run([install, "--no-defaults", f"--datadir={data}", "--user=root", "--skip-test-db",
                    "--auth-root-authentication-method=normal"], check=True, capture_output=True, timeout=120)
    port = _free_port()
    proc = subprocess.Popen([server, "--no-defaults", f"--datadir={data}", f"--socket={root}/sock", f"--port={port}",
                             "--bind-address=127.0.0.1", "--user=root", f"--pid-file={root}/pid",
                             "--skip-log-bin", "--innodb-buffer-pool-size=16M"],
                            stdout=subprocess.DEVNULL, stderr=open(root / "err.log", "w"))
    import pymysql

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", connect_timeout=1)
                break
            except pymysql.MySQLError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"mariadbd did not start: {(root / 'err.log').read_text()[-2000:]}")
                time.sleep(0.2)
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE labkit")
        conn.close()
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_config_round_trips_through_mariadb(mariadb: int) -> None:
    import pymysql

    cfg = from_mapping(GOOD)
    conn = pymysql.connect(host="127.0.0.1", port=mariadb, user="root", password="", database="labkit")
    try:
        write_mysql(conn, cfg)
        write_mysql(conn, cfg)  # idempotent: replaces the PDC's rows
    finally:
        conn.close()
    url = f"mysql://root:@127.0.0.1:{mariadb}/labkit?name=pdc-low-1"
    assert load_config(url) == cfg
    with pytest.raises(PdcConfigError, match="no row for PDC 'other'"):
        read_mysql(url.replace("pdc-low-1", "other"))
    conn = pymysql.connect(host="127.0.0.1", port=mariadb, user="root", password="", database="labkit")
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE pdc_input SET port=0 WHERE pdc_name='pdc-low-1' AND position=1")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(PdcConfigError, match=r"inputs\[1\]: field 'port' must be in"):
        load_config(url)


def _mariadb_cli(port: int, sql: str, user: str = "root", database: str = "labkit") -> subprocess.CompletedProcess:
    client = shutil.which("mariadb") or shutil.which("mysql")
    if not client:
        pytest.skip("MariaDB client not installed")
    return subprocess.run([client, "--protocol=tcp", "-h127.0.0.1", f"-P{port}", f"-u{user}", "-D", database, "-N",
                           "-B", "-e", sql], capture_output=True, text=True, timeout=60)


def test_config_sql_script_stores_what_write_mysql_stores(mariadb: int) -> None:
    from labkit.grid.pdc_config import config_sql

    odd = from_mapping({**GOOD, "name": "pdc-o'brien", "inputs": [
        {"name": "pmu-\"q\"", "host": "a\\b.svc", "port": 4712, "idcode": 7}]})
    proc = _mariadb_cli(mariadb, config_sql([from_mapping(GOOD), odd]))
    assert proc.returncode == 0, proc.stderr
    assert load_config(f"mysql://root:@127.0.0.1:{mariadb}/labkit?name=pdc-o%27brien") == odd
    assert load_config(f"mysql://root:@127.0.0.1:{mariadb}/labkit?name=pdc-low-1") == from_mapping(GOOD)


def test_reader_account_reads_but_cannot_write(mariadb: int) -> None:
    from labkit.grid.pdc_config import config_sql, reader_sql

    assert _mariadb_cli(mariadb, reader_sql("labkit", "pdc") + config_sql([from_mapping(GOOD)])).returncode == 0
    assert load_config(f"mysql://pdc@127.0.0.1:{mariadb}/labkit?name=pdc-low-1") == from_mapping(GOOD)
    denied = _mariadb_cli(mariadb, "DELETE FROM pdc", user="pdc")
    assert denied.returncode != 0 and "denied" in denied.stderr
    with pytest.raises(PdcConfigError, match="must match"):
        reader_sql("labkit; DROP", "pdc")


def _db_file(tmp_path: Path, port: int, **db: object) -> Path:
    """A rendered-style config file (stale values) whose ``db`` entry points at ``port``."""
    stale = {**GOOD, "idcode": 999, "inputs": [{"name": "stale", "host": "x", "port": 1, "idcode": 9}],
             "output_host": "0.0.0.0", "backoff_max": 1.0, "level": "low",
             "db": {"host": "127.0.0.1", "port": port, "database": "labkit", "user": "root", **db}}
    path = tmp_path / "pdc.json"
    path.write_text(json.dumps(stale))
    return path


def _seed(port: int) -> None:
    """Write the GOOD configuration into the test MariaDB on ``port``."""
    conn = __import__("pymysql").connect(host="127.0.0.1", port=port, user="root", password="", database="labkit")
    try:
        write_mysql(conn, from_mapping(GOOD))
    finally:
        conn.close()


def test_file_with_a_db_entry_is_filled_from_the_database_and_timed(tmp_path: Path, mariadb: int) -> None:
    from labkit.grid.pdc_config import load_config_timed, parse_fetch_line

    _seed(mariadb)
    cfg, fetch = load_config_timed(_db_file(tmp_path, mariadb))
    assert cfg.idcode == 100 and [i.name for i in cfg.inputs] == ["pmu-a", "pmu-b"]  # the database wins
    assert cfg.output_host == "0.0.0.0" and cfg.backoff_max == 1.0 and cfg.extra["level"] == "low"  # the file's own
    assert fetch.source == "db" and fetch.attempts == 1 and 0 < fetch.seconds < 5
    assert fetch.address == f"127.0.0.1:{mariadb}/labkit"
    name, parsed = parse_fetch_line("2026-01-01 labkit.grid.pdc INFO " + fetch.log_line(cfg.name))
    assert name == cfg.name and parsed.seconds == pytest.approx(fetch.seconds, abs=1e-6)
    assert (parsed.source, parsed.address, parsed.attempts) == (fetch.source, fetch.address, fetch.attempts)
    assert parse_fetch_line("input pmu-a connected") is None


def test_unreachable_database_is_retried_until_its_timeout(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    start = time.monotonic()
    with caplog.at_level("WARNING", logger="labkit.grid.pdc_config"), \
            pytest.raises(PdcConfigError, match="cannot connect"):
        load_config(_db_file(tmp_path, _free_port(), timeout=1.5))
    assert 1.5 <= time.monotonic() - start < 10
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1, warned  # the same failure again and again is said once, as it first happened
    assert "attempt 1 at " in warned[0] and "cannot connect" in warned[0] and "retrying until 1.5 s" in warned[0]


@pytest.mark.parametrize("db, message", [
    ("here", "field 'db' must be a mapping"),
    ({"port": 3306}, "db: missing field 'host'"),
    ({"host": "h", "port": 0}, "db: field 'port' must be in"),
    ({"host": "h", "password": "x"}, r"db: unknown field\(s\) \['password'\]"),
])
def test_bad_db_entry_is_named(tmp_path: Path, db: object, message: str) -> None:
    path = tmp_path / "pdc.json"
    path.write_text(json.dumps({**GOOD, "db": db}))
    with pytest.raises(PdcConfigError, match=message):
        load_config(path)


def test_pdc_cli_logs_how_long_the_config_fetch_took(tmp_path: Path, mariadb: int) -> None:
    from labkit.grid.pdc_config import parse_fetch_line

    _seed(mariadb)
    proc = subprocess.Popen([sys.executable, "-m", "labkit.grid.pdc", "--config", str(_db_file(tmp_path, mariadb)),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("listening 0.0.0.0 ")
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()  # never leave a PDC behind, also when it ignored SIGTERM
    fetched = [f for f in map(parse_fetch_line, err.splitlines()) if f]
    assert len(fetched) == 1 and fetched[0][0] == "pdc-low-1" and fetched[0][1].source == "db", err
