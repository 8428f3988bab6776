"""The checkpoint file format moved to :mod:`swapbench.checkpoint` (beside models/, which loads it); this
old path still works for code outside swapbench that imports it."""

from swapbench.checkpoint import (  # noqa: F401
    FORMAT,
    ZOO_MANIFEST,
    flatten_state,
    load_checkpoint,
    recorded_sha256,
    save_checkpoint,
    sha256_file,
    sidecar,
    unflatten_state,
    write_tensors,
)
