#!/usr/bin/env python3
"""Validate Kubernetes manifests offline, unknown fields rejected; exit 1 on any error.

Core kinds: kubernetes-validate's bundled schemas (--strict), against the oldest and the
newest Kubernetes it ships. KEDA's ScaledObject: a JSON schema made from
cloudcoil-models-keda (pydantic models generated from KEDA's CRDs), with every object closed
to unknown properties as the API server's structural-schema pruning would drop them.
A kind neither knows is an error, not a warning.

  python tools/validate_manifests.py deploy/kubernetes.yaml
"""

from __future__ import annotations

import argparse
import functools
import sys
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, all_versions

KEDA_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}
KEDA_MODELS = "cloudcoil-models-keda"


def _closed(schema: Any) -> Any:
    """Close every object that lists its properties (and says nothing of others)."""
    if isinstance(schema, dict):
        closed = {key: _closed(value) for key, value in schema.items()}
        if "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


@functools.cache
def _keda_validator() -> jsonschema.Draft202012Validator:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    schema = _closed(ScaledObject.model_json_schema(by_alias=True, mode="validation"))
    return jsonschema.Draft202012Validator(schema)


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top)"


def validate(document: dict[str, Any], versions: list[str]) -> list[str]:
    """Every problem with one document, as sentences; empty when it is valid."""
    kind, api_version = document.get("kind", "?"), document.get("apiVersion", "?")
    if (api_version, kind) in KEDA_KINDS:
        errors = sorted(_keda_validator().iter_errors(document), key=_where)
        return [f"{kind} (KEDA schema): {_where(e)}: {e.message}" for e in errors]
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except SchemaNotFoundError as error:
            return [f"{kind} {api_version}: no schema known ({error.message})"]
        except jsonschema.ValidationError as error:
            problems.append(f"{kind} (Kubernetes {version}): {_where(error)}: {error.message}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    versions = [all_versions()[0], all_versions()[-1]]
    failed = False
    for path in args.files:
        for document in yaml.safe_load_all(path.read_text()):
            if not document:
                continue
            name = f"{path}: {document.get('kind')}/{document.get('metadata', {}).get('name')}"
            problems = validate(document, versions)
            failed |= bool(problems)
            for problem in problems:
                print(f"INVALID {name}: {problem}", file=sys.stderr)
            if not problems:
                keda = document.get("apiVersion", "").startswith("keda.sh/")
                checked = (
                    f"KEDA CRD, cloudcoil-models-keda {installed_version(KEDA_MODELS)}"
                    if keda
                    else "Kubernetes " + " and ".join(versions)
                )
                print(f"valid   {name} (strict, {checked})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
