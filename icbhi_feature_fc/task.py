"""ICBHI 2017 respiratory sounds on the official patient-level 60/40 split."""
from common.data.icbhi import CYCLE_CLASSES, DOWNLOAD, DOWNLOADS, RECORDING_CLASSES, read_icbhi
from common.probing.protocols import OfficialSplit, Protocol
from common.task import Task

# No official validation part: 10% of the training patients are held out.
SPLIT = OfficialSplit("split", valid_group="patient")

TASK = Task(
    name="icbhi", title="ICBHI 2017", folder=__file__, read=read_icbhi, data_env="ICBHI_ROOT", download=DOWNLOAD,
    downloads=(DOWNLOADS,),
    protocols={
        "recording": Protocol("recording", SPLIT, select=lambda items: items["kind"] == "recording",
                              classes=RECORDING_CLASSES, metric="icbhi_score", normal_class="normal",
                              description="one item per recording, normal vs abnormal (the seeds' task)"),
        "cycle": Protocol("cycle", SPLIT, select=lambda items: items["kind"] == "cycle", classes=CYCLE_CLASSES,
                          metric="icbhi_score", normal_class="normal",
                          description="one item per respiratory cycle, 4 classes (the challenge task)"),
    },
)
