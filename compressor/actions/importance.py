"""Channel importance criteria: which channels of a group torch-pruning removes first.

One registered factory per criterion (:data:`IMPORTANCES`); torch-pruning's importance
classes do the scoring. torch-pruning is imported when a criterion is built, so the config
and ``compress --help`` can list the names without loading it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compressor.registry import Registry

IMPORTANCES: Registry[Callable[[], Any]] = Registry("importance criterion")


@IMPORTANCES.register("magnitude", "L2 norm of the group's weights (GroupMagnitudeImportance)")
def magnitude() -> Any:
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=2)


@IMPORTANCES.register("l1", "L1 norm of the group's weights (GroupMagnitudeImportance p=1)")
def l1() -> Any:
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=1)


@IMPORTANCES.register("bn_scale", "BatchNorm scale of each channel (BNScaleImportance)")
def bn_scale() -> Any:
    import torch_pruning as tp

    return tp.importance.BNScaleImportance()


@IMPORTANCES.register("random", "random channels (RandomImportance): a control")
def random() -> Any:
    import torch_pruning as tp

    return tp.importance.RandomImportance()
