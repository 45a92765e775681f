"""An output folder written as one unit: files are staged in a hidden subfolder, moved in together, and a manifest
with every file's SHA-256 is written last. A run killed before :meth:`RunFolder.commit` leaves the folder as it was;
a folder without a valid manifest (killed inside the commit itself, or edited by hand) is never reused."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import SrquantError
from .fileio import checked_json, read_checked_json, sha256_file
from .results import write_text_atomic
from .validate import check_output_dir

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "srquant-run/1"
_STAGING = ".staging-"


class RunFolder:
    """``path`` as one unit of files; ``staging`` is where a run writes them until :meth:`commit`."""

    def __init__(self, path: str | Path, what: str = "--out"):
        self.path = check_output_dir(path, what)
        self._remove_abandoned_staging()
        self.staging = Path(tempfile.mkdtemp(dir=self.path, prefix=f"{_STAGING}{os.getpid()}-"))

    def valid_manifest(self) -> dict[str, Any] | None:
        """The committed manifest when it is well formed and every file it lists still has its SHA-256, else None."""
        try:
            manifest = read_checked_json(self.path / MANIFEST, "run manifest")
            files = manifest["files"]
            if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
                return None
            if all(sha256_file(self.path / name) == digest for name, digest in files.items()):
                return manifest
        except (SrquantError, OSError, KeyError, TypeError):
            pass
        return None

    def commit(self, names: list[str]) -> None:
        """Move every staged file in (replacing older ones), then write the manifest of ``names``: the files of
        the unit, staged now or kept from the committed run (a reused model)."""
        (self.path / MANIFEST).unlink(missing_ok=True)
        for staged in sorted(self.staging.iterdir()):
            os.replace(staged, self.path / staged.name)
        files = {name: sha256_file(self.path / name) for name in sorted(names)}
        write_text_atomic(self.path / MANIFEST, checked_json({"format": MANIFEST_FORMAT, "files": files}))
        self.discard()

    def discard(self) -> None:
        """Remove the staging folder and whatever is still in it."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def _remove_abandoned_staging(self) -> None:
        """Staging folders of runs that were killed (their process is gone)."""
        for folder in self.path.glob(f"{_STAGING}*"):
            pid = folder.name[len(_STAGING):].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
