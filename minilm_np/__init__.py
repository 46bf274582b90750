"""minilm-np: sentence embeddings from BERT sentence models in numpy + numba."""
