"""Speech Commands keyword spotting. Protocols:

- `full`: every word is a class (30 in v0.01, 35 in v0.02); train,
  validation and test by the archive's lists.
- `lists12`: 10 commands + `_unknown_` + `_silence_`, scored on
  `testing_list.txt`. About 62% of its test items are `_unknown_` (a constant
  answer scores ~62%), so it matches no published table; read its macro-F1.
- `superb`: SUPERB keyword spotting (s3prl `downstream/speech_commands`), on
  v0.01. Matched: train and validation by the archive's lists (s3prl hashes
  speakers exactly as the lists were made; `testing_list.txt` is never used);
  every word outside the 10 commands is `_unknown_`; test on the official
  archive `speech_commands_test_set_v0.01` (3,081 clips, its own `_silence_`
  and `_unknown_` folders, labels from the folder names); training batches
  drawn class-balanced (weight 1 / class count, with replacement, one epoch =
  as many draws as training items: s3prl's WeightedRandomSampler); lr and
  epoch chosen on validation by balanced accuracy (s3prl draws its dev set
  with the same weighted sampler, so dev accuracy is class-balanced).
  Differs, because embeddings are frozen and stored: s3prl crops one random
  1 s window of each `_background_noise_` file each time it is drawn and
  uses the same files for dev; here `_silence_` is fixed 1 s windows, one per
  second, the first 80% of each file training and the next 10% validation.
- `hear`: HEAR 2021 `speech_commands` (hear-preprocess), on v0.02. Matched:
  train = all words minus both lists, validation = `validation_list.txt`;
  `_silence_` = 1 s windows every 0.5 s of every `_background_noise_` file,
  those of running_tap.wav validating and all others training; other words
  `_unknown_`; test on `speech_commands_test_set_v0.02` (4,890 clips).
  Differs: HEAR's published numbers use its "5h" mode (training and
  validation subsampled to 5 hours); here every clip is used.

SUPERB and HEAR features of the other dataset version run but are recorded as
not comparable (`variant`). A missing test archive is named in one sentence.
"""
from common.data.speech_commands import (DOWNLOAD, DOWNLOADS, SILENCE, TWELVE_CLASSES, main_archive_items,
                                         read_speech_commands, require_test_archive, twelve_class_label)
from common.probing.protocols import OfficialSplit, Protocol
from common.task import Task

LISTS = OfficialSplit("split", valid="validation")
SUPERB_TEST, HEAR_TEST = "speech_commands_test_set_v0.01", "speech_commands_test_set_v0.02"

TASK = Task(
    name="speech_commands", title="Speech Commands", folder=__file__, read=read_speech_commands,
    data_env="SPEECH_COMMANDS_ROOT", download=DOWNLOAD, downloads=DOWNLOADS,
    protocols={
        "full": Protocol("full", LISTS, select=lambda items: main_archive_items(items) & (items["label"] != SILENCE),
                         description="every word is a class (30 in v0.01, 35 in v0.02), official lists, "
                                     "test accuracy"),
        "lists12": Protocol(
            "lists12", LISTS, select=main_archive_items, relabel=twelve_class_label, classes=TWELVE_CLASSES,
            comparable=False,
            description="10 commands + _unknown_ + _silence_ scored on testing_list.txt, ~62% _unknown_: "
                        "matches no published table (not SUPERB, not HEAR); read macro-F1"),
        "superb": Protocol(
            "superb", OfficialSplit("split", train="train", valid="validation", test=SUPERB_TEST),
            select=lambda items: (main_archive_items(items) & items["split"].isin(["train", "validation"]))
            | (items["archive"] == SUPERB_TEST),
            requires=require_test_archive(SUPERB_TEST), relabel=twelve_class_label, classes=TWELVE_CLASSES,
            balanced_sampling=True, selection_metric="balanced_accuracy", variant="speech_commands_v0.01",
            description="SUPERB KS: v0.01, 12 classes, class-balanced training, tested on "
                        "speech_commands_test_set_v0.01 (3,081 clips), test accuracy"),
        "hear": Protocol(
            "hear", OfficialSplit("hear_split", train="train", valid="validation", test=HEAR_TEST),
            select=lambda items: ((items["archive"] == "main") & items["hear_split"].isin(["train", "validation"]))
            | (items["archive"] == HEAR_TEST),
            requires=require_test_archive(HEAR_TEST), relabel=twelve_class_label, classes=TWELVE_CLASSES,
            variant="speech_commands_v0.02",
            description="HEAR 2021 speech_commands: v0.02, 12 classes, tested on "
                        "speech_commands_test_set_v0.02 (4,890 clips), test accuracy"),
    },
)
