"""UrbanSound8K: 8,732 urban sound clips, 10 classes, 10 official folds
(slices of one freesound recording, `fsID`, share a fold)."""
from common.data import URBANSOUND8K
from common.data.csv_table import URBANSOUND8K_DOWNLOAD
from common.probing.protocols import OfficialFolds, Protocol
from common.task import Task

TASK = Task(
    name="urbansound8k", title="UrbanSound8K", folder=__file__, read=URBANSOUND8K, data_env="US8K_ROOT",
    download=URBANSOUND8K.download, downloads=(URBANSOUND8K_DOWNLOAD,),
    protocols={"official": Protocol("official", OfficialFolds("fold"), group="fsID",
                                    description="10-fold leave-one-fold-out, mean accuracy over folds")},
)
