"""Speaker identification on LibriSpeech train-clean-100 (251 speakers).

- `official`: each speaker's utterances split 80/20 (stratified, seed 42),
  validation 10% of training. Utterances of one chapter (one recording
  session) then sit on both sides.
- `chapters`: chapter-disjoint: per speaker, whole chapters go to the test
  part until it holds 20% of the speaker's utterances, at least one chapter
  staying in training; validation takes whole chapters of speakers left
  with two or more; no chapter is on two sides (checked). Speakers with a
  single chapter cannot be split so and are left out.
"""
from common.data.librispeech import DOWNLOAD, DOWNLOADS, read_librispeech
from common.probing.protocols import GroupsPerClassSplit, Protocol, RandomSplit
from common.task import Task

TASK = Task(
    name="speaker_id", title="LibriSpeech speaker ID", folder=__file__, read=read_librispeech,
    data_env="LIBRISPEECH_ROOT", download=DOWNLOAD, downloads=(DOWNLOADS,),
    protocols={
        "official": Protocol("official", RandomSplit(test_size=0.2, seed=42),
                             description="per-speaker stratified 80/20 split (seed 42), test accuracy"),
        "chapters": Protocol("chapters", GroupsPerClassSplit("chapter", test_size=0.2, valid_size=0.1, seed=42),
                             group="chapter",
                             description="chapter-disjoint: each speaker's chapters split ~80/20, no chapter "
                                         "on two sides (speakers with one chapter left out), test accuracy"),
    },
)
