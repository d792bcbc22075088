"""Analysis of images and features: image statistics of generator families vs natural photographs, and of frozen
features on real data (2-D embeddings, unit selectivity, retrieval, attention maps, per-class accuracy; run.py)."""
