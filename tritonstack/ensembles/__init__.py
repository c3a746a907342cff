"""Pre/post-processing steps as Triton Python-backend models, and the ensembles that chain them."""
