"""Speech Commands v0.01 / v0.02 keyword spotting with the official
validation and testing lists."""
from common.datasets.speech_commands import (DOWNLOAD, DOWNLOADS, SILENCE, TWELVE_CLASSES, read_speech_commands,
                                             twelve_class_label)
from common.protocols import OfficialSplit, Protocol
from common.task import Task

SPLIT = OfficialSplit("split", valid="validation")

TASK = Task(
    name="speech_commands", title="Speech Commands", folder=__file__, read=read_speech_commands,
    data_env="SPEECH_COMMANDS_ROOT", download=DOWNLOAD, downloads=DOWNLOADS,
    protocols={
        "full": Protocol("full", SPLIT, select=lambda items: items["label"] != SILENCE,
                         description="every word is a class (30 in v0.01, 35 in v0.02), test accuracy"),
        "12": Protocol("12", SPLIT, relabel=twelve_class_label, classes=TWELVE_CLASSES,
                       description="10 commands + _unknown_ + _silence_ (SUPERB), test accuracy"),
    },
)
