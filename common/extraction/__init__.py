"""Extraction stage: audio in, pooled embeddings out, kept in a feature store.

`extract.extract_embeddings` streams a task's audio through an encoder,
`pooling` turns frames and windows into one vector per clip, `store`
writes and verifies the sharded feature store, `distributed` splits the
work across GPUs."""
