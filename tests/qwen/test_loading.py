"""Model folder resolution and completeness checks, on a real saved (tiny) pipeline folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from layerlift.inference.backends.qwen import QwenBackend
from layerlift.inference.backends.qwen.loading import (
    apply_offline_environment,
    cached_snapshot,
    check_model_files,
    missing_files,
    resolve_model,
)
from layerlift.inference.errors import ModelFilesMissing
from layerlift.inference.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _error_for(folder: Path) -> str:
    with pytest.raises(ModelFilesMissing) as caught:
        check_model_files(resolve_model(str(folder)))
    assert caught.value.code == "model_missing"
    return caught.value.message


def test_saved_tiny_pipeline_is_complete(tiny_model_dir: Path):
    assert missing_files(tiny_model_dir) == []
    # The fixture shards the transformer like the real checkpoint, so shard checks run.
    assert (tiny_model_dir / "transformer" / "diffusion_pytorch_model.safetensors.index.json"
            ).is_file()


def test_missing_model_index_is_named(model_copy: Path):
    (model_copy / "model_index.json").unlink()
    assert "missing model_index.json" in _error_for(model_copy)


def test_missing_component_config_is_named(model_copy: Path):
    (model_copy / "transformer" / "config.json").unlink()
    assert "missing transformer/config.json" in _error_for(model_copy)


def test_missing_component_folder_is_named(model_copy: Path):
    import shutil

    shutil.rmtree(model_copy / "scheduler")
    assert "missing scheduler/" in _error_for(model_copy)


def test_missing_shard_listed_in_index_is_named(model_copy: Path):
    index = json.loads(
        (model_copy / "transformer" / "diffusion_pytorch_model.safetensors.index.json").read_text()
    )
    shard = sorted(set(index["weight_map"].values()))[-1]
    (model_copy / "transformer" / shard).unlink()
    message = _error_for(model_copy)
    assert f"transformer/{shard}" in message
    assert "diffusion_pytorch_model.safetensors.index.json" in message


def test_truncated_single_weight_file_is_named(model_copy: Path):
    (model_copy / "text_encoder" / "model.safetensors").write_bytes(b"")
    assert "text_encoder/model.safetensors" in _error_for(model_copy)


def test_missing_tokenizer_file_is_named(model_copy: Path):
    (model_copy / "tokenizer" / "tokenizer.json").unlink()
    assert "tokenizer/tokenizer.json" in _error_for(model_copy)


def test_several_missing_files_are_counted(model_copy: Path):
    (model_copy / "vae" / "config.json").unlink()
    (model_copy / "transformer" / "config.json").unlink()
    assert "and 1 more" in _error_for(model_copy)


def test_nonexistent_folder_and_unconfigured_model():
    with pytest.raises(ModelFilesMissing, match="does not exist"):
        resolve_model("/no/such/model/folder")
    with pytest.raises(ModelFilesMissing, match="no Qwen-Image-Layered model is configured"):
        resolve_model(None)


def _fake_hf_cache(root: Path, model: Path, repo_id: str) -> Path:
    """The hub cache layout: blobs, a snapshot of symlinks to them, refs/main."""
    repo_dir = root / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo_dir / "snapshots" / commit
    blobs = repo_dir / "blobs"
    blobs.mkdir(parents=True)
    for number, source in enumerate(sorted(p for p in model.rglob("*") if p.is_file())):
        blob = blobs / f"blob{number}"
        blob.write_bytes(source.read_bytes())
        link = snapshot / source.relative_to(model)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def _use_hub_cache(monkeypatch, folder: Path) -> None:
    """huggingface_hub reads HF_HUB_CACHE once, at import: point both at `folder`."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))


def test_repo_id_resolves_to_the_hf_cache_snapshot(tiny_model_dir, tmp_path, monkeypatch):
    _use_hub_cache(monkeypatch, tmp_path / "hub")
    snapshot = _fake_hf_cache(tmp_path / "hub", tiny_model_dir, "Qwen/Qwen-Image-Layered")
    source = resolve_model("Qwen/Qwen-Image-Layered")
    assert source.folder == snapshot
    assert source.repo_id == "Qwen/Qwen-Image-Layered"
    assert cached_snapshot("Qwen/Qwen-Image-Layered") == snapshot
    check_model_files(source)  # complete
    # A download cut short leaves a dangling symlink: that file is named.
    shard = next((snapshot / "vae").glob("diffusion_pytorch_model-*.safetensors"))
    os.unlink(shard.resolve())
    with pytest.raises(ModelFilesMissing) as caught:
        check_model_files(source)
    assert f"vae/{shard.name}" in caught.value.message
    assert "hf download Qwen/Qwen-Image-Layered" in caught.value.message


def test_repo_id_not_in_cache(tmp_path, monkeypatch):
    _use_hub_cache(monkeypatch, tmp_path / "empty-hub")
    with pytest.raises(ModelFilesMissing, match="not in the Hugging Face cache"):
        resolve_model("Qwen/Qwen-Image-Layered")


def test_availability(tiny_model_dir: Path, model_copy: Path):
    assert not QwenBackend.availability(Settings()).ok
    assert QwenBackend.availability(Settings(model=str(tiny_model_dir), device="cpu")).ok
    (model_copy / "vae" / "config.json").unlink()
    partial = QwenBackend.availability(Settings(model=str(model_copy), device="cpu"))
    assert not partial.ok and "vae/config.json" in partial.reason
    bad_device = QwenBackend.availability(Settings(model=str(tiny_model_dir), device="tpu"))
    assert not bad_device.ok and "unknown device" in bad_device.reason


def test_auto_never_picks_the_cpu_but_a_named_backend_may_run_there(tiny_model_dir: Path):
    import torch
    from layerlift.inference.backends import choose_backend

    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has a GPU")
    settings = Settings(model=str(tiny_model_dir))
    # --backend auto: an hours-long CPU run must not start unasked.
    auto = QwenBackend.auto_availability(settings)
    assert not auto.ok and "--device cpu" in auto.reason
    name, why = choose_backend("auto", settings)
    assert name == "classic" and "qwen" in why
    # --backend qwen: allowed on the CPU (with a warning when it runs).
    assert QwenBackend.availability(settings).ok
    assert choose_backend("qwen", settings)[0] == "qwen"


def test_offline_sets_hub_variables(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    apply_offline_environment(False)
    assert "HF_HUB_OFFLINE" not in os.environ
    apply_offline_environment(True)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_cli_help_and_backend_import_do_not_import_torch():
    code = (
        "import sys\n"
        "from layerlift.desktop.cli import build_parser\n"
        "build_parser().format_help()\n"
        "import layerlift.inference.backends.qwen\n"
        "from layerlift.inference.backends.qwen import QwenBackend\n"
        "from layerlift.inference.settings import Settings\n"
        "QwenBackend.availability(Settings())\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'diffusers' not in sys.modules, 'diffusers imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
