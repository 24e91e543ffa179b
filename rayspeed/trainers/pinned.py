"""Where the driver's helper actors (the metrics queue, run control, a trial's epoch gate) live: on
the driver's own node. They hold no CPU, so Ray would otherwise place them on any node, and losing a
worker node would take the run's bookkeeping with it."""

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def on_driver_node() -> dict:
    """Actor options: no CPU, on this process's node."""
    node = ray.get_runtime_context().get_node_id()
    return {"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=False)}
