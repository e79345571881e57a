"""File helpers shared by the PFN estimator (verifies weights) and trainer (exports them)."""

import hashlib


def _sha256(path):
    """Hex sha256 of a file, read in 1 MiB chunks (the digest ``manifest.json`` records)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
