"""A small kustomize renderer for the features deploy/k8s uses, so the manifest tests run with no binary.

Supported, with kustomize's semantics and its transformer order (patches, namespace, labels, images):
- `resources`: YAML files (several documents each) and directories holding a kustomization;
- `components`: directories holding a Component, whose resources, generators and patches are added after
  the including kustomization's resources;
- `namespace`: set on every namespaced object;
- `labels` with `includeTemplates` (not `includeSelectors`): metadata labels, plus the labels of pod templates
  and of StatefulSets' volumeClaimTemplates;
- `images`: `newName` / `newTag` / `digest` for containers and initContainers of pod templates;
- `patches` with `path` or inline `patch`: strategic merge, matched by kind and name. Lists merge by key for
  the fields we patch (containers, initContainers, env, volumes, volumeMounts by name/mountPath; the patch's
  items first, then the others, as kustomize orders them); every other
  list, and every list of a custom resource, is replaced, as kustomize does for a type with no schema;
  `null` deletes a field;
- `secretGenerator` / `configMapGenerator` from `envs` and `literals`, with `generatorOptions.disableNameSuffixHash`.

Anything else in a kustomization is refused rather than silently ignored. tests/unit/test_k8s_manifests.py
also compares this renderer with `kubectl kustomize` wherever kubectl is installed.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]

SUPPORTED_FIELDS = {
    "apiVersion", "kind", "resources", "components", "namespace", "labels", "images", "patches",
    "secretGenerator", "configMapGenerator", "generatorOptions",
}  # fmt: skip
CLUSTER_SCOPED_KINDS = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
    "StorageClass", "PriorityClass", "IngressClass", "RuntimeClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "APIService",
}  # fmt: skip
# Where a kind keeps its pod template (labels with includeTemplates, images).
POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
# Strategic-merge keys of the built-in list fields our patches touch.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath"}  # fmt: skip


class UnsupportedKustomization(Exception):
    """The kustomization uses a feature this renderer does not implement."""


def render(directory: Path) -> list[Object]:
    """The objects `kubectl kustomize directory` would print (order aside)."""
    kustomization = _load_kustomization(directory)
    objects: list[Object] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        objects.extend(render(path) if path.is_dir() else load_documents(path))
    objects.extend(_generate(directory, kustomization))
    for entry in kustomization.get("components", []):
        # A Component adds its resources and patches to what the including kustomization has so far.
        component_dir = directory / entry
        component = _load_kustomization(component_dir)
        for resource in component.get("resources", []):
            path = component_dir / resource
            objects.extend(render(path) if path.is_dir() else load_documents(path))
        objects.extend(_generate(component_dir, component))
        for patch in _patches(component_dir, component):
            _apply_patch(objects, patch)
    for patch in _patches(directory, kustomization):
        _apply_patch(objects, patch)
    if namespace := kustomization.get("namespace"):
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED_KINDS:
                obj["metadata"]["namespace"] = namespace
    for label_set in kustomization.get("labels", []):
        _apply_labels(objects, label_set)
    for image in kustomization.get("images", []):
        _apply_image(objects, image)
    return objects


def load_documents(path: Path) -> list[Object]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def _load_kustomization(directory: Path) -> Object:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).is_file():
            (kustomization,) = load_documents(directory / name)
            unknown = set(kustomization) - SUPPORTED_FIELDS
            if unknown:
                raise UnsupportedKustomization(f"{directory}: {sorted(unknown)}")
            return kustomization
    raise FileNotFoundError(f"no kustomization in {directory}")


def _generate(directory: Path, kustomization: Object) -> list[Object]:
    options = kustomization.get("generatorOptions", {})
    if set(options) - {"disableNameSuffixHash"} or (
        (kustomization.get("secretGenerator") or kustomization.get("configMapGenerator"))
        and not options.get("disableNameSuffixHash")
    ):
        raise UnsupportedKustomization("generators need generatorOptions.disableNameSuffixHash: true (no hashing)")
    generated = []
    for kind, key in (("Secret", "secretGenerator"), ("ConfigMap", "configMapGenerator")):
        for spec in kustomization.get(key, []):
            if set(spec) - {"name", "envs", "literals", "type"}:
                raise UnsupportedKustomization(f"{key}: {sorted(spec)}")
            pairs: dict[str, str] = {}
            for env_file in spec.get("envs", []):
                pairs.update(_read_env_file(directory / env_file))
            for literal in spec.get("literals", []):
                name, _, value = literal.partition("=")
                pairs[name] = value
            obj: Object = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
            if kind == "Secret":
                obj["type"] = spec.get("type", "Opaque")
                obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in pairs.items()}
            else:
                obj["data"] = pairs
            generated.append(obj)
    return generated


def _read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, separator, value = line.partition("=")
            if not separator:
                raise UnsupportedKustomization(f"{path}: '{line}' is not KEY=VALUE")
            pairs[name] = value
    return pairs


def _patches(directory: Path, kustomization: Object) -> list[Object]:
    patches = []
    for entry in kustomization.get("patches", []):
        if set(entry) - {"path", "patch"}:
            raise UnsupportedKustomization(f"patches: only path/patch are supported, got {sorted(entry)}")
        documents = (
            load_documents(directory / entry["path"]) if "path" in entry else list(yaml.safe_load_all(entry["patch"]))
        )
        for document in documents:
            if isinstance(document, list) or "op" in document:
                raise UnsupportedKustomization("JSON 6902 patches are not supported")
            patches.append(document)
    return patches


def _apply_patch(objects: list[Object], patch: Object) -> None:
    name = patch["metadata"]["name"]
    matches = [
        obj for obj in objects
        if obj["kind"] == patch["kind"] and obj["metadata"]["name"] == name
        and obj["apiVersion"].split("/")[0] == patch["apiVersion"].split("/")[0]
    ]  # fmt: skip
    if len(matches) != 1:
        raise ValueError(f"patch for {patch['kind']}/{name} matches {len(matches)} objects")
    target = matches[0]
    builtin = _is_builtin(target["apiVersion"])
    merged = strategic_merge(target, patch, builtin)
    target.clear()
    target.update(merged)


def _is_builtin(api_version: str) -> bool:
    group = api_version.split("/")[0] if "/" in api_version else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def strategic_merge(base: Any, patch: Any, builtin: bool, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, builtin, key)
            else:
                merged[key] = _without_nulls(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and builtin and field in MERGE_KEYS:
        # As kustomize orders them: the patch's items first (merged into their namesakes), then the rest.
        key = MERGE_KEYS[field]
        patched_keys = {item.get(key) for item in patch}
        merged = []
        for item in patch:
            old = next((old for old in base if old.get(key) == item.get(key)), None)
            merged.append(_without_nulls(item) if old is None else strategic_merge(old, item, builtin))
        return merged + [copy.deepcopy(old) for old in base if old.get(key) not in patched_keys]
    return _without_nulls(copy.deepcopy(patch))


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def pod_template(obj: Object) -> Object | None:
    path = POD_TEMPLATE_PATHS.get(obj["kind"])
    node: Any = obj
    for step in path or ():
        node = node.get(step) if isinstance(node, dict) else None
    return node if path and isinstance(node, dict) else None


def _apply_labels(objects: list[Object], label_set: Object) -> None:
    if set(label_set) - {"pairs", "includeTemplates", "includeSelectors"} or label_set.get("includeSelectors"):
        raise UnsupportedKustomization(f"labels: {label_set}")
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(label_set["pairs"])
        template = pod_template(obj)
        if not label_set.get("includeTemplates"):
            continue
        if template is not None:
            template.setdefault("metadata", {}).setdefault("labels", {}).update(label_set["pairs"])
        for claim in obj.get("spec", {}).get("volumeClaimTemplates", []) if obj["kind"] == "StatefulSet" else []:
            claim.setdefault("metadata", {}).setdefault("labels", {}).update(label_set["pairs"])


def _apply_image(objects: list[Object], image: Object) -> None:
    if set(image) - {"name", "newName", "newTag", "digest"}:
        raise UnsupportedKustomization(f"images: {image}")
    for obj in objects:
        template = pod_template(obj)
        if template is None:
            continue
        spec = template.get("spec", {})
        for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            name, tag, digest = split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{name}:{image['newTag']}"
            elif digest:
                container["image"] = f"{name}@{digest}"
            else:
                container["image"] = f"{name}:{tag}" if tag else name


def split_image(reference: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference; a registry's port is not a tag."""
    name, _, digest = reference.partition("@")
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > last_slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest
