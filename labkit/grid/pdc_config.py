"""PDC configuration: the model and its sources (a file or a MySQL-protocol database).

A PDC reads, at start, its IDCODE, inputs (PMUs or lower PDCs), wait window (openPDC's lag
time), output port and reporting rate. Sources:

* a file: ``.json``, ``.yaml``/``.yml`` or ``.toml`` with the keys of :class:`PdcConfig`
  (``inputs`` is a list of ``{name, host, port, idcode}``);
* a database URL ``mysql://user:password@host:port/database?name=<pdc name>`` read with PyMySQL
  (MariaDB/Galera or Percona XtraDB). Tables (see :data:`SCHEMA_SQL`)::

      pdc(name PRIMARY KEY, idcode, wait_window_ms, output_port, rate)
      pdc_input(pdc_name, position, name, host, port, idcode)

A file may carry a ``db`` entry (``{host, port, database, user, timeout}``, as
``labkit.workloads.render.pdc_config`` writes it for a namespace with a DB domain): the PDC
named in the file then takes its IDCODE, inputs, wait window, port and rate from that
database (:func:`load_config_timed`, which also says how long the fetch took).
:func:`config_sql` and :func:`reader_sql` give the SQL that stores configurations and creates
the read-only account, for a ``mariadb`` client inside a database pod.

Every problem raises one :class:`PdcConfigError` naming the source and the bad field.
"""

from __future__ import annotations

import json
import logging
import re
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

_log = logging.getLogger(__name__)

__all__ = ["PdcConfig", "PdcInput", "PdcConfigError", "load_config", "load_config_timed", "from_mapping",
           "SCHEMA_SQL", "write_mysql", "read_mysql", "config_statements", "config_sql", "reader_sql", "DbSource",
           "db_source", "ConfigFetch", "fetch_from_db", "parse_fetch_line", "FETCH_LINE"]

#: Database, table and account names accepted by :func:`reader_sql`.
_IDENT = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class PdcConfigError(ValueError):
    """The PDC configuration is missing, unreadable or invalid (the message says where and why)."""


@dataclass(frozen=True)
class PdcInput:
    """One upstream C37.118 server (a PMU or a lower-level PDC)."""

    name: str
    host: str
    port: int
    idcode: int


@dataclass(frozen=True)
class PdcConfig:
    """Everything a PDC needs at start.

    Attributes
    ----------
    idcode
        IDCODE of the concentrated output stream.
    inputs
        Upstream servers, in output order.
    wait_window
        Seconds after a timestamp before its frame is sent with whatever arrived (lag time).
    output_port
        TCP port of the output server (0 = any free port).
    rate
        Output frames per second.
    output_host
        Address to listen on.
    backoff_min, backoff_max
        Reconnect backoff bounds in seconds (doubling from min to max).
    config_timeout
        Seconds to wait for every input's CFG-2 before serving with the inputs known so far.
    max_lead
        Frames stamped more than this many seconds ahead of the PDC's clock (and of the other
        inputs' latest frames) are dropped as early.
    config_change_notice
        Seconds of STAT bit 10 ("configuration change") before the output layout changes
        (C37.118.2-2011 advises 60; see ``docs/grid.md``).
    """

    idcode: int
    inputs: tuple[PdcInput, ...]
    wait_window: float = 0.1
    output_port: int = 4712
    rate: int = 30
    output_host: str = "127.0.0.1"
    backoff_min: float = 0.1
    backoff_max: float = 5.0
    config_timeout: float = 5.0
    max_lead: float = 0.5
    config_change_notice: float = 1.0
    name: str = "pdc"
    extra: Mapping[str, Any] = field(default_factory=dict)


_TOP_KEYS = {"name", "idcode", "inputs", "wait_window", "wait_window_ms", "output_port", "output_host", "rate",
             "backoff_min", "backoff_max", "config_timeout", "max_lead", "config_change_notice"}
#: Descriptive keys a rendered config file may carry (``labkit.workloads.render``); kept in ``extra``.
_EXTRA_KEYS = {"level", "db"}


def _need(d: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in d:
        raise PdcConfigError(f"{where}: missing field {key!r}")
    return _as(d[key], kind, f"{where}: field {key!r}")


def _as(value: Any, kind: type, what: str) -> Any:
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PdcConfigError(f"{what} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PdcConfigError(f"{what} must be a number, got {value!r}")
        return float(value)
    if not isinstance(value, str) or not value:
        raise PdcConfigError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _range(value: float, lo: float, hi: float, what: str) -> None:
    if not lo <= value <= hi:
        raise PdcConfigError(f"{what} must be in [{lo}, {hi}], got {value!r}")


def from_mapping(d: Mapping[str, Any], where: str = "config") -> PdcConfig:
    """Validate a plain mapping into a :class:`PdcConfig` (raises :class:`PdcConfigError`)."""
    if not isinstance(d, Mapping):
        raise PdcConfigError(f"{where}: expected a mapping at top level, got {type(d).__name__}")
    unknown = set(d) - _TOP_KEYS - _EXTRA_KEYS
    if unknown:
        raise PdcConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    idcode = _need(d, "idcode", int, where)
    _range(idcode, 0, 65535, f"{where}: field 'idcode'")
    raw_inputs = d.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise PdcConfigError(f"{where}: field 'inputs' must be a non-empty list, got {raw_inputs!r}")
    inputs = []
    for i, item in enumerate(raw_inputs):
        w = f"{where}: inputs[{i}]"
        if not isinstance(item, Mapping):
            raise PdcConfigError(f"{w} must be a mapping with name, host, port, idcode")
        extra = set(item) - {"name", "host", "port", "idcode"}
        if extra:
            raise PdcConfigError(f"{w}: unknown field(s) {sorted(extra)}")
        port = _need(item, "port", int, w)
        _range(port, 1, 65535, f"{w}: field 'port'")
        code = _need(item, "idcode", int, w)
        _range(code, 0, 65535, f"{w}: field 'idcode'")
        inputs.append(PdcInput(name=_as(item.get("name", f"in{i}"), str, f"{w}: field 'name'"),
                               host=_need(item, "host", str, w), port=port, idcode=code))
    names = [i.name for i in inputs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PdcConfigError(f"{where}: field 'inputs' has duplicate name(s) {dup}")
    if "wait_window" in d and "wait_window_ms" in d:
        raise PdcConfigError(f"{where}: give 'wait_window' (s) or 'wait_window_ms', not both")
    wait = (_as(d["wait_window_ms"], float, f"{where}: field 'wait_window_ms'") / 1000.0
            if "wait_window_ms" in d else _as(d.get("wait_window", 0.1), float, f"{where}: field 'wait_window'"))
    _range(wait, 0.0, 60.0, f"{where}: wait window (s)")
    port = _as(d.get("output_port", 4712), int, f"{where}: field 'output_port'")
    _range(port, 0, 65535, f"{where}: field 'output_port'")
    rate = _as(d.get("rate", 30), int, f"{where}: field 'rate'")
    _range(rate, 1, 240, f"{where}: field 'rate'")
    bmin = _as(d.get("backoff_min", 0.1), float, f"{where}: field 'backoff_min'")
    bmax = _as(d.get("backoff_max", 5.0), float, f"{where}: field 'backoff_max'")
    if not 0 < bmin <= bmax:
        raise PdcConfigError(f"{where}: need 0 < backoff_min <= backoff_max, got {bmin} and {bmax}")
    cto = _as(d.get("config_timeout", 5.0), float, f"{where}: field 'config_timeout'")
    _range(cto, 0.0, 3600.0, f"{where}: field 'config_timeout'")
    lead = _as(d.get("max_lead", 0.5), float, f"{where}: field 'max_lead'")
    _range(lead, 0.0, 3600.0, f"{where}: field 'max_lead'")
    notice = _as(d.get("config_change_notice", 1.0), float, f"{where}: field 'config_change_notice'")
    _range(notice, 0.0, 3600.0, f"{where}: field 'config_change_notice'")
    return PdcConfig(idcode=idcode, inputs=tuple(inputs), wait_window=wait, output_port=port, rate=rate,
                     output_host=_as(d.get("output_host", "127.0.0.1"), str, f"{where}: field 'output_host'"),
                     backoff_min=bmin, backoff_max=bmax, config_timeout=cto, max_lead=lead,
                     config_change_notice=notice,
                     name=_as(d.get("name", "pdc"), str, f"{where}: field 'name'"),
                     extra={k: d[k] for k in sorted(_EXTRA_KEYS & set(d))})


def _read_file(path: Path) -> Mapping[str, Any]:
    if not path.exists():
        raise PdcConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            return json.loads(text)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        if path.suffix == ".toml":
            return tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise PdcConfigError(f"config file {path} is not valid {path.suffix[1:]}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError and friends
        raise PdcConfigError(f"config file {path} cannot be parsed: {exc}") from None
    raise PdcConfigError(f"config file {path}: unsupported extension {path.suffix!r} (json, yaml, yml, toml)")


SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS pdc (name VARCHAR(64) PRIMARY KEY, idcode INT NOT NULL, "
    "wait_window_ms DOUBLE NOT NULL DEFAULT 100, output_port INT NOT NULL, rate INT NOT NULL DEFAULT 30)",
    "CREATE TABLE IF NOT EXISTS pdc_input (pdc_name VARCHAR(64) NOT NULL, position INT NOT NULL, "
    "name VARCHAR(64) NOT NULL, host VARCHAR(255) NOT NULL, port INT NOT NULL, idcode INT NOT NULL, "
    "PRIMARY KEY (pdc_name, position))",
)


def _mysql_params(url: str) -> tuple[dict[str, Any], str]:
    u = urlparse(url)
    if u.scheme not in ("mysql", "mysql+pymysql", "mariadb"):
        raise PdcConfigError(f"config URL {url!r}: scheme must be mysql:// or mariadb://")
    db = u.path.lstrip("/")
    name = parse_qs(u.query).get("name", [None])[0]
    if not db:
        raise PdcConfigError(f"config URL {_redact(url)}: missing database name in the path")
    if not name:
        raise PdcConfigError(f"config URL {_redact(url)}: missing '?name=<pdc name>'")
    try:
        port = u.port or 3306
    except ValueError:
        raise PdcConfigError(f"config URL {_redact(url)}: bad port") from None
    params = {"host": u.hostname or "127.0.0.1", "port": port, "user": unquote(u.username or "root"),
              "password": unquote(u.password or ""), "database": db, "connect_timeout": 5}
    return params, name


def _redact(url: str) -> str:
    u = urlparse(url)
    return url.replace(f":{u.password}@", ":***@") if u.password else url


def read_mysql(url: str) -> PdcConfig:
    """Read the configuration of PDC ``?name=`` from a MySQL-protocol database URL."""
    import pymysql

    params, name = _mysql_params(url)
    try:
        conn = pymysql.connect(**params)
    except pymysql.MySQLError as exc:
        raise PdcConfigError(f"config database {_redact(url)}: cannot connect: {exc}") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name, idcode, wait_window_ms, output_port, rate FROM pdc WHERE name=%s", (name,))
            row = cur.fetchone()
            if row is None:
                raise PdcConfigError(f"config database {_redact(url)}: no row for PDC {name!r} in table pdc")
            cur.execute("SELECT name, host, port, idcode FROM pdc_input WHERE pdc_name=%s ORDER BY position", (name,))
            inputs = [{"name": r[0], "host": r[1], "port": int(r[2]), "idcode": int(r[3])} for r in cur.fetchall()]
    except pymysql.MySQLError as exc:
        raise PdcConfigError(f"config database {_redact(url)}: query failed: {exc}") from None
    finally:
        conn.close()
    d = {"name": row[0], "idcode": int(row[1]), "wait_window_ms": float(row[2]), "output_port": int(row[3]),
         "rate": int(row[4]), "inputs": inputs}
    return from_mapping(d, where=f"config database {_redact(url)} (PDC {name!r})")


def config_statements(cfg: PdcConfig) -> list[tuple[str, tuple[Any, ...]]]:
    """``(statement, parameters)`` storing ``cfg`` (replacing that PDC's rows), after :data:`SCHEMA_SQL`."""
    out: list[tuple[str, tuple[Any, ...]]] = [(stmt, ()) for stmt in SCHEMA_SQL]
    out.append(("REPLACE INTO pdc (name, idcode, wait_window_ms, output_port, rate) VALUES (%s,%s,%s,%s,%s)",
                (cfg.name, cfg.idcode, cfg.wait_window * 1000.0, cfg.output_port, cfg.rate)))
    out.append(("DELETE FROM pdc_input WHERE pdc_name=%s", (cfg.name,)))
    for pos, inp in enumerate(cfg.inputs):
        out.append(("INSERT INTO pdc_input (pdc_name, position, name, host, port, idcode) VALUES (%s,%s,%s,%s,%s,%s)",
                    (cfg.name, pos, inp.name, inp.host, inp.port, inp.idcode)))
    return out


def write_mysql(conn: Any, cfg: PdcConfig) -> None:
    """Create the tables if needed and store ``cfg`` (replacing that PDC's rows); commits."""
    with conn.cursor() as cur:
        for stmt, params in config_statements(cfg):
            cur.execute(stmt, params or None)
    conn.commit()


def _literal(value: Any) -> str:
    """``value`` as an SQL literal (PyMySQL's escaping, as ``cursor.execute`` applies it)."""
    from pymysql.converters import escape_item

    return str(escape_item(value, "utf8mb4"))


def config_sql(cfgs: Sequence[PdcConfig]) -> str:
    """One SQL script storing ``cfgs`` in one transaction (for ``mariadb -D <db> -e``, e.g. in a DB pod).

    The same statements as :func:`write_mysql`, with the parameters escaped as PyMySQL does.
    """
    lines = [f"{stmt};" for stmt in SCHEMA_SQL]
    lines.append("START TRANSACTION;")
    for cfg in cfgs:
        for stmt, params in config_statements(cfg)[len(SCHEMA_SQL):]:
            lines.append((stmt % tuple(_literal(v) for v in params)) + ";")
    lines.append("COMMIT;")
    return "\n".join(lines)


def reader_sql(database: str, user: str) -> str:
    """SQL creating ``database`` and a password-less account ``user`` that may only read it.

    PDCs fetch their configuration with this account; it cannot write, and the database is
    reachable only inside the kit's network namespaces (or the lab network of the VMs).
    """
    for what, value in (("database", database), ("user", user)):
        if not _IDENT.match(value):
            raise PdcConfigError(f"{what} name {value!r} must match {_IDENT.pattern}")
    return "\n".join([f"CREATE DATABASE IF NOT EXISTS `{database}`;",
                      f"CREATE USER IF NOT EXISTS '{user}'@'%';",
                      f"GRANT SELECT ON `{database}`.* TO '{user}'@'%';"])


def load_config(source: str | Path) -> PdcConfig:
    """Load a PDC configuration from a file path or a ``mysql://`` URL.

    A file whose ``db`` entry is set (``labkit.workloads.render.pdc_config``) names the
    database holding the configuration: see :func:`load_config_timed`.
    """
    return load_config_timed(source)[0]


@dataclass(frozen=True)
class DbSource:
    """The ``db`` entry of a PDC config file: where its configuration is kept.

    Attributes
    ----------
    host, port, database, user
        The MySQL-protocol server (the DB domain's client Service), database and account.
    timeout
        Seconds to keep retrying (connection refused, no row yet) before giving up.
    """

    host: str
    port: int = 3306
    database: str = "labkit"
    user: str = "pdc"
    timeout: float = 60.0

    def url(self, name: str) -> str:
        """The ``mysql://`` URL of PDC ``name`` in this database (no password)."""
        return f"mysql://{quote(self.user, safe='')}@{self.host}:{self.port}/{self.database}?name={quote(name)}"


def db_source(cfg: PdcConfig, where: str = "config") -> DbSource | None:
    """The validated ``db`` entry of ``cfg`` (``None`` when absent or null)."""
    raw = cfg.extra.get("db")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise PdcConfigError(f"{where}: field 'db' must be a mapping with host, port, database, user")
    unknown = set(raw) - {"host", "port", "database", "user", "timeout"}
    if unknown:
        raise PdcConfigError(f"{where}: db: unknown field(s) {sorted(unknown)}")
    port = _as(raw.get("port", 3306), int, f"{where}: db: field 'port'")
    _range(port, 1, 65535, f"{where}: db: field 'port'")
    timeout = _as(raw.get("timeout", 60.0), float, f"{where}: db: field 'timeout'")
    _range(timeout, 0.0, 3600.0, f"{where}: db: field 'timeout'")
    return DbSource(host=_need(raw, "host", str, f"{where}: db"), port=port,
                    database=_as(raw.get("database", "labkit"), str, f"{where}: db: field 'database'"),
                    user=_as(raw.get("user", "pdc"), str, f"{where}: db: field 'user'"), timeout=timeout)


@dataclass(frozen=True)
class ConfigFetch:
    """How a PDC got its configuration at start (the "config fetch" part of a downtime).

    Attributes
    ----------
    source
        ``file`` or ``db``.
    address
        The file path, or ``host:port/database`` of the database.
    seconds
        Wall time of the fetch: for a database, from the first connection attempt to the
        last row read, retries included.
    attempts
        Connection attempts (1 for a file).
    """

    source: str
    address: str
    seconds: float
    attempts: int

    def log_line(self, name: str) -> str:
        """The line the PDC logs (parse it back with :func:`parse_fetch_line`)."""
        return (f"config-fetch name={name} source={self.source} address={self.address} "
                f"seconds={self.seconds:.6f} attempts={self.attempts}")


FETCH_LINE = re.compile(r"config-fetch name=(?P<name>\S+) source=(?P<source>file|db) address=(?P<address>\S+) "
                        r"seconds=(?P<seconds>[0-9.]+) attempts=(?P<attempts>\d+)")


def parse_fetch_line(line: str) -> tuple[str, ConfigFetch] | None:
    """``(pdc name, ConfigFetch)`` from a PDC log line, ``None`` when it is not a fetch line."""
    m = FETCH_LINE.search(line)
    if m is None:
        return None
    return m["name"], ConfigFetch(m["source"], m["address"], float(m["seconds"]), int(m["attempts"]))


def fetch_from_db(base: PdcConfig, db: DbSource, *, sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> tuple[PdcConfig, ConfigFetch]:
    """Read PDC ``base.name``'s configuration from ``db``, retrying for ``db.timeout`` seconds.

    The database row decides IDCODE, inputs, wait window, output port and rate; the file
    keeps what only concerns this process (output address, backoff, config timeout, extras).

    Each new kind of failure is logged (a warning) as it happens, so that a PDC killed while it
    still retries (its liveness probe) leaves the reason in its log.

    Raises
    ------
    PdcConfigError
        The last error (cannot connect, no row for the PDC, invalid row) once the time is up.
    """
    url = db.url(base.name)
    import pymysql  # noqa: F401  (imported before the clock starts: the fetch is network + queries)

    start = clock()
    attempts, last_error = 0, ""
    while True:
        attempts += 1
        try:
            row = read_mysql(url)
            break
        except PdcConfigError as exc:
            if clock() - start >= db.timeout:
                raise
            if str(exc) != last_error:
                last_error = str(exc)
                _log.warning("configuration fetch, attempt %d at %.1f s: %s; retrying until %.1f s",
                             attempts, clock() - start, exc, db.timeout)
            sleep(min(0.5, max(0.0, db.timeout - (clock() - start))))
    fetch = ConfigFetch("db", f"{db.host}:{db.port}/{db.database}", clock() - start, attempts)
    merged = replace(row, output_host=base.output_host, backoff_min=base.backoff_min, backoff_max=base.backoff_max,
                     config_timeout=base.config_timeout, extra=base.extra)
    return merged, fetch


def load_config_timed(source: str | Path) -> tuple[PdcConfig, ConfigFetch]:
    """Load a PDC configuration (as :func:`load_config`) and say how long it took.

    A ``mysql://`` URL is read once. A file is read; when its ``db`` entry is set, the
    configuration of the PDC named in the file is then fetched from that database
    (:func:`fetch_from_db`), and the file's own IDCODE, inputs, wait window, port and rate
    are only the rendered defaults the database replaces.
    """
    text = str(source)
    if "://" in text:
        import pymysql  # noqa: F401  (not part of the fetch time)
    start = time.monotonic()
    if "://" in text:
        cfg = read_mysql(text)
        u = urlparse(text)
        return cfg, ConfigFetch("db", f"{u.hostname}:{u.port or 3306}{u.path}", time.monotonic() - start, 1)
    path = Path(text)
    where = f"config file {path}"
    cfg = from_mapping(_read_file(path), where=where)
    db = db_source(cfg, where)
    if db is None:
        return cfg, ConfigFetch("file", str(path), time.monotonic() - start, 1)
    return fetch_from_db(cfg, db)


def to_mapping(cfg: PdcConfig) -> dict[str, Any]:
    """Plain mapping of ``cfg`` (what a JSON/YAML config file holds)."""
    return {"name": cfg.name, "idcode": cfg.idcode, "wait_window": cfg.wait_window, "output_port": cfg.output_port,
            "output_host": cfg.output_host, "rate": cfg.rate, "backoff_min": cfg.backoff_min,
            "backoff_max": cfg.backoff_max, "config_timeout": cfg.config_timeout, "max_lead": cfg.max_lead,
            "config_change_notice": cfg.config_change_notice,
            "inputs": [{"name": i.name, "host": i.host, "port": i.port, "idcode": i.idcode} for i in cfg.inputs]}
