"""labkit.grid.config: PDC configuration from files and from a MySQL-protocol database."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit.grid.config import PdcConfigError, from_mapping, load_config, read_mysql, to_mapping, write_mysql

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
