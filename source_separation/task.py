"""Source separation: query a source out of a mixture, scored on AudioSep's
ESC-50 mixtures and on NSynth duets (seed 002's setting)."""
from common.separation.task import SeparationTask

TASK = SeparationTask(name="source_separation", title="Source separation", folder=__file__,
                      benchmarks=("esc50", "nsynth_duets"))
