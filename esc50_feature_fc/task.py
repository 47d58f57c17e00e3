"""ESC-50: 2,000 environmental sound clips, 50 classes, 5 official folds.
Clips cut from one source recording (`src_file`) share a fold."""
from common.data import ESC50
from common.data.csv_table import ESC50_DOWNLOAD
from common.probing.protocols import OfficialFolds, Protocol
from common.task import Task

TASK = Task(
    name="esc50", title="ESC-50", folder=__file__, read=ESC50, data_env="ESC50_ROOT", download=ESC50.download,
    protocols={"official": Protocol("official", OfficialFolds("fold"), group="src_file",
                                    description="5-fold leave-one-fold-out, mean accuracy over folds")},
    downloads=(ESC50_DOWNLOAD,),
    subsets={"esc10": lambda items: items["esc10"].astype(str).str.lower() == "true"},
)
