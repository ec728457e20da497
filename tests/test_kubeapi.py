"""labkit.testbed.kubeapi: an API server's 5xx is retried for every method, other errors are not."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from labkit.testbed import kubeapi

pytestmark = pytest.mark.unit

BUSY = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "reason": "InternalError",
        "message": "Internal error occurred: resource quota evaluation timed out"}


class _ApiServer(ThreadingHTTPServer):
    """A loopback stand-in for kube-apiserver: answers ``answers`` in order (status, body), then 201."""

    def __init__(self, answers: list[tuple[int, dict]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers
        self.requests: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: _ApiServer

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(f"POST {self.path} {body['metadata']['name']}")
        status, answer = self.server.answers.pop(0) if self.server.answers else (201, body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[_ApiServer]:
    srv = _ApiServer(list(request.param))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _core(server: _ApiServer) -> client.CoreV1Api:
    conf = client.Configuration()
    conf.host = f"http://127.0.0.1:{server.server_address[1]}"
    return client.CoreV1Api(kubeapi.api_client(conf, kubeapi.api_retries(backoff_s=0.0)))  # no waits here


@pytest.mark.parametrize("server", [[(500, BUSY), (503, BUSY)]], indirect=True)
def test_a_create_answered_with_a_5xx_is_sent_again(server: _ApiServer) -> None:
    created = _core(server).create_namespace({"metadata": {"name": "liqo-tenant-x"}})
    assert created.metadata.name == "liqo-tenant-x"
    assert server.requests == ["POST /api/v1/namespaces liqo-tenant-x"] * 3


@pytest.mark.parametrize("server", [[(500, BUSY)] * (kubeapi.STATUS_RETRIES + 1)], indirect=True)
def test_after_the_last_retry_the_server_error_is_raised_with_its_message(
        server: _ApiServer) -> None:
    with pytest.raises(ApiException) as err:
        _core(server).create_namespace({"metadata": {"name": "n"}})
    assert err.value.status == 500 and "resource quota evaluation timed out" in err.value.body
    assert len(server.requests) == kubeapi.STATUS_RETRIES + 1


@pytest.mark.parametrize("server", [[(409, {**BUSY, "code": 409, "reason": "AlreadyExists"})]], indirect=True)
def test_a_client_error_is_not_retried(server: _ApiServer) -> None:
    with pytest.raises(ApiException) as err:
        _core(server).create_namespace({"metadata": {"name": "n"}})
    assert err.value.status == 409 and len(server.requests) == 1


def test_connection_errors_keep_urllib3s_three_retries_without_a_wait() -> None:
    from urllib3.exceptions import NewConnectionError

    retry = kubeapi.api_retries()
    for _ in range(3):
        retry = retry.increment("POST", "/api", error=NewConnectionError(None, "refused"))  # type: ignore[arg-type]
        assert retry.get_backoff_time() == 0.0
    with pytest.raises(Exception, match="Max retries"):
        retry.increment("POST", "/api", error=NewConnectionError(None, "refused"))  # type: ignore[arg-type]


def test_the_backoff_between_answers_doubles_from_none() -> None:
    from urllib3 import HTTPResponse

    retry, waits = kubeapi.api_retries(backoff_s=0.5), []
    for _ in range(kubeapi.STATUS_RETRIES):
        retry = retry.increment("POST", "/api", response=HTTPResponse(status=500))
        waits.append(retry.get_backoff_time())
    assert waits == [0.0, 1.0, 2.0, 4.0, 8.0]


def test_a_kubeconfig_client_gets_the_context_asked_for_and_the_retries(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": n, "cluster": {"server": f"https://127.0.0.{i}:6443"}} for i, n in ((1, "a"), (2, "b"))],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in ("a", "b")]}))
    api = kubeapi.api_client_from_kubeconfig(str(path), context="b")
    assert api.configuration.host == "https://127.0.0.2:6443"
    assert isinstance(api.configuration.retries, kubeapi.ApiRetry)
