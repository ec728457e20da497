"""The test beds' Kubernetes API clients (both backends), with retries for an API server under load.

A kube-apiserver on a saturated machine answers some requests with a 5xx it would not give an
idle one: ``Internal error occurred: resource quota evaluation timed out`` (500: the
ResourceQuota admission plugin did not finish in time; nothing was stored), ``etcdserver:
request timed out``, 503 while it starts (the scalability experiment's 20-cluster test bed
meets the first one on a 2-core machine). :func:`api_client` retries such answers for every
method, with a backoff, and keeps urllib3's defaults otherwise: connection errors are retried 3
times without a wait, so a call to a cluster cut off by a fault fails fast.

A create retried after a 5xx that had in fact been stored answers 409 AlreadyExists: the
peering's create helper accepts that; elsewhere the 409 is raised with its message.
The tunnel health publisher (``liqo.health``) keeps a client of its own: its short retries
must not wait this long.
"""

from __future__ import annotations

from typing import Any

from urllib3.util.retry import Retry

#: Answers of an API server that a retry may cure.
RETRIED_STATUSES = (500, 502, 503, 504)
#: Retries of such an answer; with :data:`BACKOFF_S` they wait 0 + 1 + 2 + 4 + 8 = 15 s in all.
STATUS_RETRIES = 5
#: urllib3's backoff factor: the n-th retry of an answer waits ``BACKOFF_S * 2 ** (n - 1)`` s, the first none.
BACKOFF_S = 0.5


class ApiRetry(Retry):
    """urllib3's Retry: a 5xx answer is retried for every method, with a backoff.

    Connection and read errors keep urllib3's defaults: 3 retries, no wait, a read error
    retried only for an idempotent method (a POST whose answer was lost is not sent twice).
    """

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        """Whether an answer is retried: a status of :data:`RETRIED_STATUSES`, whatever the method."""
        return super().is_retry("GET", status_code, has_retry_after)

    def get_backoff_time(self) -> float:
        """No wait after an error without an answer; urllib3's exponential backoff after a 5xx."""
        if self.history and self.history[-1].status is None:
            return 0.0
        return super().get_backoff_time()


def api_retries(backoff_s: float = BACKOFF_S) -> Retry:
    """The retry policy of the test beds' API clients (see the module's docstring)."""
    return ApiRetry(total=None, connect=3, read=3, redirect=3, other=3, status=STATUS_RETRIES,
                    status_forcelist=RETRIED_STATUSES, backoff_factor=backoff_s, raise_on_status=False,
                    respect_retry_after_header=True)


def api_client(configuration: Any, retries: Retry | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` on ``configuration`` with ``retries`` (default :func:`api_retries`)."""
    from kubernetes import client

    configuration.retries = retries if retries is not None else api_retries()
    return client.ApiClient(configuration)


def api_client_from_kubeconfig(path: str, context: str | None = None) -> Any:
    """:func:`api_client` for a kubeconfig file's ``context`` (the current one if ``None``)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=path, context=context, client_configuration=configuration,
                            persist_config=False)
    return api_client(configuration)
