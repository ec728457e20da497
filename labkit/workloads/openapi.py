"""Validate rendered objects against the Kubernetes OpenAPI models of the ``kubernetes`` client.

No hand-written schema: an object is parsed with the client's generated model of its kind
(``V1Deployment.from_dict``), which refuses wrong types and missing required fields, and is
then serialised back (``ApiClient.sanitize_for_serialization``); a field the model does not
know is dropped on the way, so any difference between the two names a misspelt or unknown
field. Liqo's NamespaceOffloading (a CRD, not in the client) has its ``clusterSelector``
checked as a ``V1NodeSelector`` and its other fields against Liqo v0.10.2's spec keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pydantic
from kubernetes import client

from labkit.workloads.render import Manifest

#: Models of the kinds labkit renders, by ``apiVersion/kind``.
MODELS: dict[str, type] = {
    "v1/Namespace": client.V1Namespace,
    "v1/ConfigMap": client.V1ConfigMap,
    "v1/Service": client.V1Service,
    "apps/v1/Deployment": client.V1Deployment,
    "apps/v1/StatefulSet": client.V1StatefulSet,
}
OFFLOADING_SPEC_KEYS = {"namespaceMappingStrategy", "podOffloadingStrategy", "clusterSelector"}
OFFLOADING_VALUES = {"namespaceMappingStrategy": {"EnforceSameName", "DefaultName"},
                     "podOffloadingStrategy": {"Local", "Remote", "LocalAndRemote"}}


class ManifestError(ValueError):
    """A rendered object does not match its Kubernetes model; the message names the object and field."""


def check(obj: Mapping[str, Any]) -> None:
    """Validate one object against the client's model of its kind.

    Raises
    ------
    ManifestError
        Naming ``Kind/namespace/name`` and the field: a wrong type, a missing required field, an
        unknown (dropped) field, or an unknown kind.
    """
    what = _what(obj)
    key = f"{obj.get('apiVersion')}/{obj.get('kind')}"
    if key == "offloading.liqo.io/v1alpha1/NamespaceOffloading":
        _check_offloading(obj, what)
        return
    model = MODELS.get(key)
    if model is None:
        raise ManifestError(f"{what}: no Kubernetes model for {key} (known: {sorted(MODELS)})")
    _round_trip(model, obj, what)


def check_all(manifests: Iterable[Manifest | Mapping[str, Any]]) -> int:
    """Validate every object; returns how many were checked (raises on the first bad one)."""
    count = 0
    for item in manifests:
        check(item.obj if isinstance(item, Manifest) else item)
        count += 1
    return count


def _what(obj: Mapping[str, Any]) -> str:
    """``Deployment/test/pmu-1``."""
    meta = obj.get("metadata") or {}
    parts = [str(obj.get("kind", "?")), meta.get("namespace"), str(meta.get("name", "?"))]
    return "/".join(p for p in parts if p)


def _round_trip(model: type, obj: Mapping[str, Any], what: str) -> None:
    """Parse ``obj`` into ``model`` and compare its serialisation with ``obj``."""
    try:
        parsed = model.from_dict(dict(obj))  # type: ignore[attr-defined]
    except (pydantic.ValidationError, ValueError, TypeError) as err:
        raise ManifestError(f"{what}: {err}") from None
    back = client.ApiClient().sanitize_for_serialization(parsed)
    diffs = _diff(obj, back, "")
    if diffs:
        raise ManifestError(f"{what}: not in the {model.__name__} model: {', '.join(diffs[:5])}")


def _diff(ours: Any, theirs: Any, path: str) -> list[str]:
    """Paths where ``ours`` has something the round-tripped ``theirs`` lost or changed."""
    if isinstance(ours, Mapping):
        if not isinstance(theirs, Mapping):
            return [path or "."]
        out = []
        for key, value in ours.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in theirs:
                out.append(f"{where} (unknown field)")
            else:
                out += _diff(value, theirs[key], where)
        return out
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return [path]
        return [d for i, (a, b) in enumerate(zip(ours, theirs)) for d in _diff(a, b, f"{path}[{i}]")]
    return [] if ours == theirs and type(ours) is type(theirs) else [f"{path} ({ours!r} became {theirs!r})"]


def _check_offloading(obj: Mapping[str, Any], what: str) -> None:
    """Liqo's NamespaceOffloading: known spec keys and values; the selector as a V1NodeSelector."""
    _round_trip(client.V1ObjectMeta, obj.get("metadata") or {}, f"{what}.metadata")
    spec = obj.get("spec") or {}
    unknown = set(spec) - OFFLOADING_SPEC_KEYS
    if unknown:
        raise ManifestError(f"{what}: unknown spec field(s) {sorted(unknown)} (known: {sorted(OFFLOADING_SPEC_KEYS)})")
    for key, allowed in OFFLOADING_VALUES.items():
        if key in spec and spec[key] not in allowed:
            raise ManifestError(f"{what}: spec.{key} {spec[key]!r} is not one of {sorted(allowed)}")
    if "clusterSelector" in spec:
        _round_trip(client.V1NodeSelector, spec["clusterSelector"], f"{what}.spec.clusterSelector")
