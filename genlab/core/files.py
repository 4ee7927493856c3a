"""Where genlab writes, and how it reads files it did not write: the one rule every writer goes through.

Writing. A command declares the folders it may write into, each an `Area`: the run folder it made or was
given, the output path the user named, a cache folder. Every write of genlab goes through this module
(`write`, `append`, `make_folder`, `copy_file`; tests/test_files.py checks the source for any other), which
- writes only inside a declared area; a path outside every area is refused (a bug, said in one line);
- never goes through a link below an area's root: each folder on the way must be a real folder (the root itself
  is the user's to name), and the file itself must not be a link;
- never replaces a file that was there before, unless the area allows it: genlab made the folder itself (a run
  folder), or the user passed --overwrite; what this process made it may replace again;
- writes each file whole: under a temporary name in the same folder, then renamed over the target;
- records what it made (path and inode), so a failed start removes exactly that (`remove_made`) and nothing a
  user or another program put beside it.

Reading. The files of a run folder are input like any other: `open_input`, `read_bytes`, `read_lines` and
`read_yaml` refuse links below the folder's root, refuse what is not a regular file, cap the size (a line, a
file, a YAML document's expanded size) and say what is wrong in one line.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from genlab.core.errors import GenlabError

_UMASK = os.umask(0)
os.umask(_UMASK)

# the most genlab reads of one file of a run folder, by what it is
MAX_TEXT = 64 << 20  # a metrics.jsonl, metrics.json (64 MiB: millions of log lines)
MAX_LINE = 1 << 20  # one line of metrics.jsonl: longer ones are skipped as torn
MAX_YAML = 1 << 20  # a config file (1 MiB)
MAX_YAML_NODES = 200_000  # a YAML document's nodes with every alias expanded (an alias bomb has billions)
MAX_PNG = 256 << 20  # a sample grid or figure


@dataclass
class Area:
    """A folder a command may write into. `replace`: files that were there before may be replaced (genlab made the
    folder, or the user passed --overwrite). `hint`: how to get past a refusal (e.g. "pass --overwrite")."""

    root: Path
    replace: bool
    what: str = "the output folder"
    hint: str = "pass --overwrite to replace it, or another path"
    made: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (st_dev, st_ino) of what we made

    def __post_init__(self):
        self.real = Path(os.path.realpath(self.root))  # the same folder reached through the links above it

    def base(self, path: Path) -> Path | None:
        """The root `path` is written as below (the root as given, or as resolved), or None if it is outside."""
        for root in (self.root, self.real):
            if path == root or root in path.parents:
                return root
        return None

    def contains(self, path: Path) -> bool:
        return self.base(path) is not None


_AREAS: list[Area] = []


def _absolute(path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


absolute = _absolute


def declare(root, *, replace: bool, what: str = "the output folder",
            hint: str = "pass --overwrite to replace it, or another path") -> Area:
    """Let this process write inside `root` (the folder itself may be a link the user named). Declaring the same
    root again returns the area there is (its policy kept, unless this one allows more)."""
    root = _absolute(root)
    for area in _AREAS:
        if area.root == root:
            area.replace = area.replace or replace
            return area
    area = Area(root, replace, what, hint)
    _AREAS.append(area)
    return area


def ensure_area(root, *, what: str = "the run folder") -> Area:
    """The area `root` is in, or (a folder handed to an in-process API, a job started by a launcher elsewhere) a
    new one on it that genlab may write freely."""
    try:
        return area_of(root)
    except GenlabError:
        return declare(root, replace=True, what=what)


def forget(root) -> None:
    """Stop writing inside `root` (the tests start each command afresh)."""
    root = _absolute(root)
    _AREAS[:] = [a for a in _AREAS if a.root != root]


def area_of(path) -> Area:
    path = _absolute(path)
    inside = [a for a in _AREAS if a.contains(path)]
    if not inside:
        raise GenlabError(f"genlab refused to write {path}: it is outside every folder this command may write "
                          f"({', '.join(str(a.root) for a in _AREAS) or 'none'}); this is a bug of genlab's, "
                          "please report it")
    return max(inside, key=lambda a: len(a.base(path).parts))  # the innermost


def _record(area: Area, path: Path) -> None:
    try:
        st = os.lstat(path)
    except OSError:
        return
    for a in _AREAS:  # every area it is in: an outer one (a sweep folder) removes it too
        if a.contains(path):
            a.made[str(path)] = (st.st_dev, st.st_ino)


def _made_here(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return any(a.made.get(str(path)) == (st.st_dev, st.st_ino) for a in _AREAS)


def _folders_to(area: Area, path: Path, create: bool = True) -> None:
    """Every folder from the area's root down to `path`'s parent is a real folder (made where missing)."""
    current = area.base(path)
    if create and not os.path.lexists(current):
        _make_base(area, current)
    for part in path.relative_to(area.base(path)).parts[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            if not create:
                return
            try:
                os.mkdir(current)
            except FileExistsError:  # made meanwhile: checked again below
                st = os.lstat(current)
            except OSError as err:
                raise GenlabError(f"cannot make the folder {current} ({err.strerror or err})") from None
            else:
                _record(area, current)
                continue
        _check_real_folder(area, current, st)


def _make_base(area: Area, current: Path) -> None:
    """Make the area's base folder `current` with its parents, and record it as made here."""
    try:
        os.makedirs(current, exist_ok=True)
    except OSError as err:
        raise GenlabError(f"cannot make {current} ({err.strerror or err}); pass another path") from None
    _record(area, current)


def _check_real_folder(area: Area, current: Path, st: os.stat_result) -> None:
    """Refuse a folder on the way that is a link or a file (`st`: its lstat)."""
    if stat.S_ISLNK(st.st_mode):
        raise GenlabError(f"{current} is a link: genlab does not write through links inside {area.what} "
                          f"({area.root}); remove the link, or pass another path")
    if not stat.S_ISDIR(st.st_mode):
        raise GenlabError(f"cannot write into {current}: it is a file, not a folder; move it away or pass "
                          "another path")


def _check_target(area: Area, path: Path, replace: bool | None) -> bool:
    """May `path` be written? Returns whether it exists now."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise GenlabError(f"{path} is a link: genlab does not write through links inside {area.what} "
                          f"({area.root}); remove the link, or pass another path")
    if stat.S_ISDIR(st.st_mode):
        raise GenlabError(f"cannot write {path}: a folder of that name is in the way; move it or pass another path")
    allowed = area.replace if replace is None else replace
    if not allowed and not _made_here(path):
        raise GenlabError(f"{path} already exists: {area.hint}")
    return True


def write(path, writer: Callable[[str], None], *, replace: bool | None = None) -> Path:
    """Write a file whole: `writer(tmp)` fills a temporary file beside `path`, which is then renamed over it. A
    crash mid-write never leaves a damaged file; the path must be inside a declared area (see the module's rule).
    `replace` overrides the area's policy for this one file."""
    path = _absolute(path)
    area = area_of(path)
    _folders_to(area, path)
    _check_target(area, path, replace)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _record(area, path)
    return path


atomic_write = write  # the name the writers have used


def append(path, *, replace: bool | None = None):
    """A text file opened to append lines (line-buffered), never through a link; made if missing."""
    path = _absolute(path)
    area = area_of(path)
    _folders_to(area, path)
    existed = _check_target(area, path, replace)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as err:
        raise GenlabError(f"cannot write {path} ({err.strerror or err})") from None
    if not existed:
        _record(area, path)
    return os.fdopen(fd, "a", buffering=1)


def make_folder(path) -> Path:
    """A folder inside a declared area (and every folder above it, below the root), never through a link."""
    path = _absolute(path)
    area = area_of(path)
    _folders_to(area, path / "_")
    return path


def prepare_folder(path) -> Path:
    """A folder a third-party writer fills (TensorBoard's tb/, wandb/): made like make_folder, and refused where it
    is a link."""
    return make_folder(path)


def copy_file(source, path, *, source_root=None, replace: bool | None = None) -> Path:
    """Copy a file read as untrusted input (no link, a regular file) into a declared area, whole."""
    import shutil

    def fill(tmp):
        with open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)

    with open_input(source, root=source_root) as src:
        return write(path, fill, replace=replace)


def check_target(path, *, folder: bool = False) -> None:
    """Before a long job: would `path` (a file, or with folder=True a folder of outputs) be written? The same
    one line as the write itself would give, before any work."""
    path = _absolute(path)
    area = area_of(path)
    _folders_to(area, path, create=False)
    if not folder:
        _check_target(area, path, None)
        return
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) and path != area.root:
        raise GenlabError(f"{path} is a link: genlab does not write through links inside {area.what} "
                          f"({area.root}); remove the link, or pass another path")
    if not os.path.isdir(path):
        raise GenlabError(f"{path} already exists and is not a folder: pass a new folder")
    if any(os.scandir(path)) and not area.replace:
        raise GenlabError(f"{path} already exists and is not an empty folder: pass a new one, or --overwrite to "
                          "replace the files of the same names in it")


def stage_folder(out) -> Path:
    """A hidden folder beside `out` for outputs written all or nothing (publish_folder moves them in)."""
    out = _absolute(out)
    _folders_to(area_of(out), out)  # the folders above it: real ones, made where missing
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    declare(staging, replace=True, what="a staging folder")
    return staging


def publish_folder(staging, out) -> int:
    """Move a staged folder's files to `out`: renamed whole where `out` is new or empty, else (with --overwrite)
    file by file over those of the same names. The staging folder is gone afterwards. Returns the count."""
    import shutil

    staging, out = Path(staging), _absolute(out)
    area = area_of(out)
    names = sorted(os.listdir(staging))
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode) and not any(os.scandir(out)):
        os.rmdir(out)
        st = None
    if st is None:
        os.replace(staging, out)
        _record(area, out)
    else:
        check_target(out, folder=True)
        for name in names:  # every name checked before any file is replaced
            _check_target(area, out / name, None)
        for name in names:
            os.replace(staging / name, out / name)
        shutil.rmtree(staging, ignore_errors=True)
    forget(staging)
    return len(names)


def discard(staging) -> None:
    """Remove a staging folder (what stage_folder made) with what is left in it."""
    import shutil

    shutil.rmtree(staging, ignore_errors=True)
    forget(staging)


def mkstemp_in(folder, prefix: str, suffix: str) -> Path:
    """A fresh temporary file inside a declared folder (for writers that fill a file by its name: a memory map)."""
    folder = make_folder(folder)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


def publish(tmp, path) -> Path:
    """Rename a temporary file made by mkstemp_in over `path`, in the same folder, with the usual file mode."""
    path = _absolute(path)
    area = area_of(path)
    _folders_to(area, path)
    _check_target(area, path, None)
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)
    _record(area, path)
    return path


def adopt(area: Area, path) -> None:
    """Record `path` (made by a writer outside this module: Hydra's .hydra/ and train.log, a run folder claimed
    by rundir) as made by this process, if it is there."""
    path = _absolute(path)
    try:
        st = os.lstat(path)
    except OSError:
        return
    for a in _AREAS:
        if a.contains(path):
            a.made[str(path)] = (st.st_dev, st.st_ino)
    if not area.contains(path):
        area.made[str(path)] = (st.st_dev, st.st_ino)


def remove_made(root) -> list[Path]:
    """Remove what this process made at or inside `root`, where it is still what was made (the same inode): a
    folder it made goes whole, what it made inside someone else's folder goes alone. Returns what was removed."""
    roots = {_absolute(root), Path(os.path.realpath(_absolute(root)))}
    made = _made_inside(roots)
    removed: list[Path] = []
    for path in sorted(made, key=lambda p: len(Path(p).parts)):
        p = Path(path)
        if any(r == p or r in p.parents for r in removed):
            continue
        if _remove_if_unchanged(p, made[path]):
            removed.append(p)
    for area in _AREAS:
        for p in removed:
            area.made.pop(str(p), None)
    return removed


def _made_inside(roots: set[Path]) -> dict[str, tuple[int, int]]:
    """What every area recorded as made at or inside one of `roots`: path -> (device, inode)."""
    made: dict[str, tuple[int, int]] = {}
    for area in _AREAS:
        for path, ident in area.made.items():
            if any(Path(path) == r or r in Path(path).parents for r in roots):
                made[path] = ident
    return made


def _remove_if_unchanged(p: Path, ident: tuple[int, int]) -> bool:
    """Remove `p` (a folder whole) if it is still the one made here (`ident`); returns whether it was removed."""
    import shutil

    try:
        st = os.lstat(p)
    except OSError:
        return False
    if (st.st_dev, st.st_ino) != ident:
        return False  # replaced by someone else since: theirs now
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            os.unlink(p)
        except OSError:
            return False
    return True


# ---- reading what genlab did not write --------------------------------------------------------------------

def _no_links_below(root: Path, path: Path) -> None:
    for parent in reversed(path.parents):
        if parent == root or root not in parent.parents:
            continue
        if os.path.islink(parent):
            raise GenlabError(f"{parent} is a link: genlab does not read through links inside {root}; remove it")


def open_input(path, root=None, what: str = "file"):
    """A regular file opened for reading as untrusted input: not a link (nor below `root` through one)."""
    path = _absolute(path)
    if root is not None:
        _no_links_below(_absolute(root), path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        if os.path.islink(path):
            raise GenlabError(f"{path} is a link: genlab reads the {what}s of a run folder only as plain files; "
                              "replace the link by the file") from None
        raise GenlabError(f"cannot read {path} ({err.strerror or err})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise GenlabError(f"{path} is not a regular file (a device, a pipe or a folder); remove it")
    return os.fdopen(fd, "rb")


def read_bytes(path, limit: int, root=None, what: str = "file") -> bytes:
    with open_input(path, root, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise GenlabError(f"{path} is {size:,} bytes, more than the {limit:,} genlab reads of a {what}; "
                              "it is not a file genlab wrote: remove or replace it")
        return f.read(limit + 1)[:limit]


def read_lines(path, root=None, max_line: int = MAX_LINE, limit: int = MAX_TEXT) -> Iterator[str]:
    """The lines of a text file, streamed: a line longer than max_line or not UTF-8 is skipped (as a torn one),
    and at most `limit` bytes are read."""
    with open_input(path, root, "text file") as f:
        seen = 0
        while seen < limit:
            line = f.readline(max_line + 1)
            if not line:
                return
            seen += len(line)
            if len(line) > max_line and not line.endswith(b"\n"):
                while seen < limit:  # skip the rest of an over-long line without holding it
                    rest = f.readline(max_line)
                    seen += len(rest)
                    if not rest or rest.endswith(b"\n"):
                        break
                continue
            try:
                yield line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                continue


def yaml_nodes(text: str, loader=None) -> int:
    """How many nodes a YAML text holds with every alias expanded (bounded work: each node counted once)."""
    import yaml

    loader = loader or yaml.SafeLoader
    counts: dict[int, int] = {}

    def count(node) -> int:
        key = id(node)
        if key in counts:
            return counts[key]
        counts[key] = 1  # a recursive alias counts once
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(count(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(count(k) + count(v) for k, v in node.value)
        counts[key] = total
        return min(total, 10 * MAX_YAML_NODES)

    return sum(count(node) for node in yaml.compose_all(text, Loader=loader) if node is not None)


MAX_YAML_DEPTH = 100


def _depth(text: str) -> int:
    """How deeply a YAML (or JSON) text nests its [ and { (block nesting is bounded by the line length)."""
    depth = most = 0
    for c in text:
        if c in "[{":
            depth += 1
            most = max(most, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
    return most


def check_yaml_text(text: str, where) -> None:
    """One line for a YAML text genlab should not load: a syntax error, an unsafe tag, an alias bomb, a nesting
    deep enough to exhaust Python's recursion."""
    import yaml
    from omegaconf._utils import get_yaml_loader

    if _depth(text) > MAX_YAML_DEPTH:
        raise GenlabError(f"{where} nests deeper than {MAX_YAML_DEPTH} levels: it is not a config genlab reads")
    try:
        nodes = yaml_nodes(text, get_yaml_loader())
    except RecursionError:
        raise GenlabError(f"{where} nests too deeply: it is not a config genlab reads") from None
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())[:200]
        raise GenlabError(f"{where} is not valid YAML ({first})") from None
    if nodes > MAX_YAML_NODES:
        raise GenlabError(f"{where} expands to more than {MAX_YAML_NODES:,} YAML nodes (repeated aliases: an alias "
                          "bomb?); write the values out")
    try:
        list(yaml.load_all(text, Loader=get_yaml_loader()))  # safe tags only: a python/object tag is refused
    except RecursionError:
        raise GenlabError(f"{where} nests too deeply: it is not a config genlab reads") from None
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())[:200]
        raise GenlabError(f"{where} is not valid YAML ({first})") from None


def read_yaml(path, root=None, what: str = "config file"):
    """A YAML file of a run folder as an OmegaConf container: at most MAX_YAML bytes, safe tags only, aliases
    bounded; anything else is one line."""
    from omegaconf import OmegaConf

    data = read_bytes(path, MAX_YAML, root, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise GenlabError(f"{path} is not a text file; it is not a {what} genlab wrote") from None
    check_yaml_text(text, path)
    try:
        return OmegaConf.create(OmegaConf.to_container(OmegaConf.create(_safe_load(text)), resolve=False))
    except Exception as err:  # noqa: BLE001  (OmegaConf's many errors on odd keys and values)
        raise GenlabError(f"{path} is not a {what} genlab can read ({' '.join(str(err).split())[:160]})") from None


def _safe_load(text: str):
    import yaml
    from omegaconf._utils import get_yaml_loader

    try:
        return yaml.load(text, Loader=get_yaml_loader())
    except yaml.YAMLError as err:
        raise GenlabError(f"not valid YAML ({' '.join(str(err).split())[:200]})") from None
