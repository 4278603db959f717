"""Where the external picture corpus is and how its psd-tools test files are laid out.

The corpus is never part of the repository (nothing of psd-tools is shipped): a folder named
by LAYERLIFT_CORPUS, holding psd-tools' `tests/psd_files` as an archive of its repository
extracts them (see tests/test_corpus.py). The `corpus` tests and `bench/real_psd.py` read it.
"""

from __future__ import annotations

from pathlib import Path

CORPUS_ENV = "LAYERLIFT_CORPUS"
# Where psd-tools' test files may sit inside the corpus folder, most specific first.
PLACES = ("psd-tools/tests/psd_files", "tests/psd_files", "psd_files", ".")


def psd_files_in(corpus: Path) -> Path | None:
    """The folder of psd-tools' test files inside the corpus, if it holds one."""
    for place in PLACES:
        candidate = corpus / place
        if candidate.is_dir() and any(candidate.glob("*.psd")):
            return candidate
    return None
