"""NSynth instrument family: 11 classes, official train / valid / test."""
from common.data.nsynth import DOWNLOAD, DOWNLOADS, FAMILIES, read_nsynth
from common.probing.protocols import OfficialSplit, Protocol
from common.task import Task

TASK = Task(
    name="nsynth", title="NSynth family", folder=__file__, read=read_nsynth, data_env="NSYNTH_ROOT",
    download=DOWNLOAD, downloads=(DOWNLOADS,),
    protocols={"official": Protocol("official", OfficialSplit("split", valid="valid"), classes=FAMILIES,
                                    description="train on train, select on valid, test accuracy")},
)
