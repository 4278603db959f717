"""Where the Qwen-Image-Layered weights are, and whether all of them are there.

A model is named either by a local folder (a `save_pretrained` / `hf download --local-dir`
layout) or by a Hugging Face repo id looked up in the local HF cache. Nothing here imports
torch or diffusers: `availability()` runs these checks on every capabilities request, and a
missing shard must be named *before* a multi-minute load fails half-way with a stack trace.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from layerlift.inference.errors import ModelFilesMissing

REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

# Weight files diffusers/transformers look for when a component has no shard index.
_SINGLE_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
)
_INDEX_SUFFIXES = (".safetensors.index.json", ".bin.index.json")
# Libraries whose components are configs plus weights (as opposed to tokenizers/schedulers).
_MODEL_CLASS_HINTS = ("Model", "ForConditionalGeneration", "Autoencoder", "Transformer")


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: the folder to load, and the repo id when it came from the HF cache."""

    folder: Path
    repo_id: str | None = None

    def describe(self) -> str:
        if self.repo_id:
            return f"{self.repo_id} (Hugging Face cache: {self.folder})"
        return str(self.folder)


def apply_offline_environment(offline: bool) -> None:
    """Tell huggingface_hub/transformers/diffusers not to touch the network.

    They read these variables when first imported, so this must run before the lazy import of
    diffusers; `local_files_only=True` on the load call covers a library imported earlier.
    """
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def hf_cache_dir() -> Path:
    """The hub cache folder huggingface_hub uses (its own precedence of HF_HUB_CACHE, HF_HOME…)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(repo_id: str, revision: str = "main") -> Path | None:
    """The snapshot folder of `repo_id` in the HF cache, or None when it was never fetched.

    huggingface_hub resolves the revision (refs/main or a commit) without the network; it is
    imported only here, when the setting names a repo id rather than a folder.
    """
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:
        raise ModelFilesMissing(
            f"{repo_id} names a Hugging Face repo, but huggingface_hub is not installed: "
            "pip install 'layerlift[qwen]', or pass the model's folder") from exc
    try:
        folder = snapshot_download(repo_id, revision=revision, local_files_only=True)
    except LocalEntryNotFoundError:
        return None
    return Path(folder)


def resolve_model(model: str | None) -> ModelSource:
    """Turn the `model` setting into a folder; raise ModelFilesMissing saying what to do."""
    if not model:
        raise ModelFilesMissing(
            "no Qwen-Image-Layered model is configured: pass --model PATH_OR_REPO_ID or set "
            "'model' in the settings (see the README, 'Getting the weights')"
        )
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelFilesMissing(f"the model path {path} is a file; it must be a folder")
        return ModelSource(path.resolve())
    if REPO_ID_PATTERN.match(model) and not model.startswith((".", "/")):
        snapshot = cached_snapshot(model)
        if snapshot is None:
            raise ModelFilesMissing(
                f"{model} is not in the Hugging Face cache ({hf_cache_dir()}); download it once "
                f"with `hf download {model}` or pass the folder that holds it"
            )
        return ModelSource(snapshot, repo_id=model)
    raise ModelFilesMissing(f"the model folder {path} does not exist")


def _is_model_component(library: str, class_name: str) -> bool:
    return library in ("diffusers", "transformers") and any(
        hint in class_name for hint in _MODEL_CLASS_HINTS
    ) and not class_name.endswith(("Tokenizer", "TokenizerFast", "Processor", "Scheduler"))


def _present(path: Path) -> bool:
    """A file that exists and is not empty (a dangling cache symlink or a cut download is not)."""
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def _check_weights(folder: Path, component: str, library: str) -> list[str]:
    """Missing weight files of one model component, as paths relative to the model folder."""
    # Prefer the safetensors index, as the loaders do.
    indexes = sorted(
        (p for p in folder.iterdir() if p.name.endswith(_INDEX_SUFFIXES)),
        key=lambda p: (not p.name.endswith(".safetensors.index.json"), p.name),
    )
    if indexes:
        index = indexes[0]
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, AttributeError):
            return [f"{component}/{index.name} (unreadable shard index)"]
        if not shards:
            return [f"{component}/{index.name} (the shard index lists no files)"]
        return [
            f"{component}/{shard} (listed in {component}/{index.name})"
            for shard in shards
            if not _present(folder / shard)
        ]
    if any(_present(folder / name) for name in _SINGLE_WEIGHTS):
        return []
    expected = _SINGLE_WEIGHTS[0] if library == "diffusers" else _SINGLE_WEIGHTS[1]
    return [f"{component}/{expected}"]


def _check_component(root: Path, component: str, library: str, class_name: str) -> list[str]:
    folder = root / component
    if not folder.is_dir():
        return [f"{component}/ (the folder of the {class_name} component)"]
    missing: list[str] = []
    if class_name.endswith("Scheduler"):
        if not _present(folder / "scheduler_config.json"):
            missing.append(f"{component}/scheduler_config.json")
    elif class_name.endswith(("Tokenizer", "TokenizerFast")):
        if not _present(folder / "tokenizer_config.json"):
            missing.append(f"{component}/tokenizer_config.json")
        if not (_present(folder / "tokenizer.json") or _present(folder / "vocab.json")):
            missing.append(f"{component}/tokenizer.json")
    elif class_name.endswith("Processor"):
        if not (
            _present(folder / "processor_config.json")
            or _present(folder / "preprocessor_config.json")
        ):
            missing.append(f"{component}/preprocessor_config.json")
        if not (_present(folder / "tokenizer.json") or _present(folder / "vocab.json")):
            missing.append(f"{component}/tokenizer.json")
    elif _is_model_component(library, class_name):
        if not _present(folder / "config.json"):
            missing.append(f"{component}/config.json")
        missing.extend(_check_weights(folder, component, library))
    return missing


def missing_files(root: Path) -> list[str]:
    """Every file the pipeline needs that is absent from `root`, relative to it; [] if complete."""
    index_path = root / "model_index.json"
    if not _present(index_path):
        return ["model_index.json"]
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return [f"model_index.json (unreadable: {exc})"]
    missing: list[str] = []
    for component, spec in sorted(index.items()):
        if component.startswith("_") or not isinstance(spec, list) or len(spec) != 2:
            continue
        library, class_name = spec
        if library is None or class_name is None:
            continue  # an optional component the pipeline was saved without
        missing.extend(_check_component(root, component, str(library), str(class_name)))
    return missing


def check_model_files(source: ModelSource) -> None:
    """Raise ModelFilesMissing naming the first missing file (and how many more are missing)."""
    missing = missing_files(source.folder)
    if not missing:
        return
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    hint = (
        f"; run `hf download {source.repo_id}` again to complete it"
        if source.repo_id
        else "; copy the complete model folder again"
    )
    raise ModelFilesMissing(
        f"the model at {source.describe()} is incomplete: missing {missing[0]}{more}{hint}"
    )
