"""Probing stage: stored embeddings in, probe results out.

`protocols` cuts a task's items into official folds, `probes` holds the two
heads, `training` trains one with selection on validation, `metrics` scores
it, `evaluate` runs every (store, layer, protocol, head) combination,
`probe_io` saves probes and `predict` applies a saved one to new audio."""
