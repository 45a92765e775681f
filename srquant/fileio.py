"""File helpers shared by every writer and reader: atomic writes with the normal file mode, content hashes."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import ArtifactError, ConfigError, InputError, OutputError

_CHUNK = 1 << 20


def default_file_mode() -> int:
    """0o666 minus the umask: the mode ``open()`` gives a new file (``mkstemp`` alone gives 0o600)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)  # no /proc: read the umask by setting it (and put it back at once)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error it replaces ``path`` (mode
    0o666 minus umask), otherwise it is removed. ``path`` must not be a folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; a file path is needed here")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths: Iterable[str | Path]) -> str:
    """One hex SHA-256 over the names and contents of ``paths`` (in the given order)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{Path(path).name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _json_digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps({k: v for k, v in payload.items() if k != "sha256"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def checked_json(payload: dict[str, Any], indent: int | None = 2) -> str:
    """JSON text of ``payload`` with a ``sha256`` entry over the rest (verified by :func:`read_checked_json`)."""
    return json.dumps({**payload, "sha256": _json_digest(payload)}, indent=indent) + "\n"


def read_checked_json(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON object written by :func:`checked_json` (the ``sha256`` entry verified and dropped; files without one,
    from older versions, are read as they are); a damaged file raises :class:`ArtifactError` naming it."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{what} {path} is not readable JSON ({err})") from None
    if not isinstance(payload, dict):
        raise ArtifactError(f"{what} {path} holds a {type(payload).__name__}, not a JSON object")
    if "sha256" in payload and payload.pop("sha256") != _json_digest(payload):
        raise ArtifactError(f"{what} {path} is corrupted or was edited: its contents do not match its sha256")
    return payload


def parse_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` without aliases (no exponential "billion laughs" documents); any syntax problem raises
    :class:`ConfigError` naming ``source``."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not supported",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except Exception as err:  # noqa: BLE001 - PyYAML raises YAMLError, ValueError (dates), RecursionError (nesting)
        if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
            mark = err.problem_mark
            detail = f"line {mark.line + 1}, column {mark.column + 1}: {err.problem}"
        else:
            detail = " ".join(str(err).split()) if not isinstance(err, RecursionError) else "nested too deeply"
        raise ConfigError(f"{source} is not valid YAML: {detail}") from None


def read_config_file(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML (or ``.toml``) file that must hold a mapping; ``what`` names it in errors (e.g. "--config file")."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what} {path} cannot be read as UTF-8 text ({err})") from None
    if path.suffix == ".toml":
        import tomllib

        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{what} {path} is not valid TOML: {err}") from None
    else:
        raw = parse_yaml(text, f"{what} {path}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of keys to values, not a {type(raw).__name__}")
    return raw
