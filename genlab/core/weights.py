"""Optional pretrained weights files genlab can use, where each is looked for, and whether it is the published one.

Nothing is downloaded at run time. A family registers the files it can use with `register(WeightsFile(...))`
(eval/inception.py: Inception-v3 for FID/KID/IS; models/srgan.py: VGG19 for the perceptual loss), and
`genlab weights` lists them; `genlab weights add FILE` puts a file downloaded elsewhere in place.

A file is looked for at its environment variable (GENLAB_<NAME>_WEIGHTS=FILE) where that is set, and only
there; else in torch's hub cache ($TORCH_HOME/hub/checkpoints/<file>, where torch.hub.load_state_dict_from_url
would put it, and where `genlab weights add` copies it). Its published
checksum is the torch.hub convention: the file name ends in the first hex digits of its SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from genlab.core import files
from genlab.core.errors import GenlabError

_FILES: dict[str, WeightsFile] = {}
_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, within one process


@dataclass(frozen=True)
class WeightsFile:
    name: str  # short name: `genlab weights add FILE` matches by checksum, `genlab weights` lists by it
    file: str  # the published file name, which ends in -<first hex digits of its sha256>.<suffix>
    url: str  # where to download it
    used_by: str  # what needs it, e.g. "genlab eval: fid, kid, is"
    megabytes: int  # its size, roughly (to tell a truncated download at a glance)
    what: str = "the weights"  # in a sentence: "FID/KID/IS needs <what> (<file>)"

    @property
    def env(self) -> str:
        return f"GENLAB_{self.name.upper()}_WEIGHTS"

    @property
    def sha256_prefix(self) -> str:
        match = re.search(r"-([0-9a-f]{8,})\.[A-Za-z0-9]+$", self.file)
        if not match:
            raise ValueError(f"{self.file}: a published weights file name ends in -<sha256 prefix>.<suffix>")
        return match.group(1)

    @property
    def default_path(self) -> Path:
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints" / self.file

    def places(self) -> list[tuple[str, Path]]:
        """Where it is looked for: $GENLAB_<NAME>_WEIGHTS alone where it is set, else the torch hub cache."""
        if os.environ.get(self.env):
            return [(f"${self.env}", Path(os.environ[self.env]).expanduser())]
        return [("torch hub cache", self.default_path)]

    def find(self) -> Path | None:
        """The file, or None. A variable set to a missing file is not quietly replaced by the cache's copy."""
        (_, path), = self.places()
        return path if path.is_file() else None

    def verified(self, path: Path) -> bool:
        return sha256_of(path).startswith(self.sha256_prefix)

    def missing(self, needed_for: str, instead: str) -> str:
        """The one line for a missing file: what needs it, where to put it, what to do without it."""
        if os.environ.get(self.env):
            return (f"{needed_for} needs {self.what} ({self.file}), and {self.env}={os.environ[self.env]} is not a "
                    f"file: point it "
                    f"at the downloaded file, or unset it to use the torch hub cache ({self.default_path}); {instead}")
        return (f"{needed_for} needs {self.what} ({self.file}), which is not on this machine ({self.default_path}): "
                f"download "
                f"{self.url} and run `genlab weights add FILE` (or set {self.env}=FILE); {instead}")


def register(weights: WeightsFile) -> WeightsFile:
    if weights.name in _FILES and _FILES[weights.name] != weights:
        raise ValueError(f"weights '{weights.name}' are registered twice")
    weights.sha256_prefix  # noqa: B018  (a name without its checksum is a programming error, found at import)
    _FILES[weights.name] = weights
    return weights


def known() -> list[WeightsFile]:
    """Every weights file registered so far (a caller that lists them imports genlab.eval and genlab.models first)."""

    return [_FILES[name] for name in sorted(_FILES)]


def sha256_of(path: Path, progress=None) -> str:
    """The file's SHA-256 (hex), read in 1 MiB blocks; cached per (path, size, mtime) within the process."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                if progress is not None:
                    progress(len(block))
        _VERIFIED[key] = digest.hexdigest()
    return _VERIFIED[key]


def add(source: Path, progress=None) -> tuple[WeightsFile, Path, bool]:
    """Copy a downloaded file to its place in the torch hub cache, under its published name, if its checksum is
    a known one. Returns (which, where, copied): copied is False when the same file was there already."""
    source = Path(source).expanduser()
    if not source.is_file():
        raise GenlabError(f"{source} is not a file: pass the downloaded weights file, e.g. "
                          "`genlab weights add ~/Downloads/weights-inception-2015-12-05-6726825d.pth`")
    candidates = known()
    digest = sha256_of(source, progress)
    match = [w for w in candidates if digest.startswith(w.sha256_prefix)]
    if not match:
        names = ", ".join(f"{w.name} ({w.file})" for w in candidates)
        raise GenlabError(f"{source} (sha256 {digest[:12]}...) is none of the weights genlab knows: {names}. "
                          "A different file is not comparable; to use one anyway, set GENLAB_<NAME>_WEIGHTS=FILE")
    weights = match[0]
    if os.environ.get(weights.env):  # the copy would go where genlab does not look while the variable is set
        raise GenlabError(f"{weights.env}={os.environ[weights.env]} is set, and genlab reads {weights.name} only "
                          f"there: point it at {source} instead, or unset it and run `genlab weights add` again")
    target = weights.default_path
    if target.is_file() and sha256_of(target) == digest:
        return weights, target, False

    def copy_checked(tmp):
        shutil.copyfile(source, tmp)
        if sha256_of(Path(tmp)) != digest:  # the copy is checked too: a full disk can cut it short
            raise OSError(f"the copy in {target.parent} differs from {source}")

    try:
        files.declare(target.parent, replace=True, what="torch's hub cache")
        files.write(target, copy_checked)
    except OSError as err:
        raise GenlabError(f"cannot put {weights.file} into {target.parent} ({getattr(err, 'strerror', None) or err}); "
                          f"set TORCH_HOME to a writable folder, or set {weights.env}={source}") from None
    return weights, target, True
