"""Where Ray Data's tasks run and how many CPUs they may take (`scaling.data_node_labels`,
`scaling.data_max_cpus`). Set on the driver's DataContext before the pipeline is built (the statistics
pass and cached splits run from there, and each dataset copies the context it was made in), and again
in Ray Train's ingest options for the streamed train split, which replace the dataset's own."""

import ray.train
from ray.data import DataContext, ExecutionResources

from rayspeed.config.scaling import ScalingConfig


def place_data_tasks(scaling: ScalingConfig) -> None:
    """Applies the data placement to this process's current DataContext."""
    options = DataContext.get_current().execution_options
    options.label_selector = dict(scaling.data_node_labels) or None
    options.resource_limits = ExecutionResources.for_limits(cpu=scaling.data_max_cpus)


def ingest_config() -> ray.train.DataConfig:
    """The train split sharded across the workers (val and test are read whole by every rank and
    row-masked), with the current context's placement."""
    options = ray.train.DataConfig.default_ingest_options()  # carries resource_limits, not the labels
    options.label_selector = DataContext.get_current().execution_options.label_selector
    return ray.train.DataConfig(datasets_to_split=["train"], execution_options=options)
