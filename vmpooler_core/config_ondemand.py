"""The on-demand keys of the `config:` section, with the original's defaults (contract B5)."""

from __future__ import annotations

from types import MappingProxyType

from .config import OnDemandSettings
from .config_node import Node


def ondemand_settings(node: Node) -> OnDemandSettings:
    """`node` is the `config:` section."""
    weights = node.child("backend_weight")
    return OnDemandSettings(
        max_instances_per_request=node.integer("max_ondemand_instances_per_request", 10, minimum=1),
        request_ttl=node.integer("ondemand_request_ttl", 5, minimum=1),
        max_vm_retries=node.integer("max_vm_retries", 3, minimum=0),
        backend_weight=MappingProxyType({target: weights.integer(target, 0, minimum=0) for target in weights.keys()}),
    )
