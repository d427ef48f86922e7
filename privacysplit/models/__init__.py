"""The base-network pool, layer specs, splitting and the cost model."""

from privacysplit.models.cost import (
    CostModel,
    DeviceProfile,
    EncoderCost,
    count_params,
    layer_macs,
    layer_shapes,
    resource_savings,
)
from privacysplit.models.network import Network, split, valid_partitions
from privacysplit.models.pool import build, list_models
from privacysplit.models.spec import LAYER_TYPES, LayerSpec

__all__ = [
    "LAYER_TYPES",
    "CostModel",
    "DeviceProfile",
    "EncoderCost",
    "LayerSpec",
    "Network",
    "build",
    "count_params",
    "layer_macs",
    "layer_shapes",
    "list_models",
    "resource_savings",
    "split",
    "valid_partitions",
]
