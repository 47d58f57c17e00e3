"""Speaker identification on LibriSpeech train-clean-100 (251 speakers):
utterances of every speaker split 80/20 (stratified, seed 42)."""
from common.datasets.librispeech import DOWNLOAD, DOWNLOADS, read_librispeech
from common.protocols import Protocol, RandomSplit
from common.task import Task

TASK = Task(
    name="speaker_id", title="LibriSpeech speaker ID", folder=__file__, read=read_librispeech,
    data_env="LIBRISPEECH_ROOT", download=DOWNLOAD, downloads=(DOWNLOADS,),
    protocols={"official": Protocol("official", RandomSplit(test_size=0.2, seed=42),
                                    description="per-speaker stratified 80/20 split (seed 42), test accuracy")},
)
