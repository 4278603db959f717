"""bench/real_size.py builds the published architecture: checked here without allocating it
(on torch's meta device), and bench/qwen_modes.py --real-size refuses plainly without CUDA."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real_size():
    pytest.importorskip("diffusers")
    from bench import real_size

    return real_size


def test_the_architecture_has_the_published_sizes(real_size):
    built = real_size.components("meta")
    for name, billions in real_size.PARAMETERS_B.items():
        # (rounded to two decimals, as published: the VAE has 0.127B)
        assert real_size.parameters_b(built[name]) == pytest.approx(billions, abs=0.005), name
    # The figures the plan uses are these parameter counts in bf16.
    from layerlift.inference.backends.qwen import memory

    for name, gib in (("transformer", memory.TRANSFORMER_GIB),
                      ("text_encoder", memory.TEXT_ENCODER_GIB), ("vae", memory.VAE_GIB)):
        assert real_size.parameters_b(built[name]) * 1e9 * 2 / memory.GIB == pytest.approx(
            gib, rel=0.06), name


def test_the_caption_sees_the_picture_in_real_image_tokens(real_size):
    from PIL import Image

    tokenizer = real_size.tokenizer()
    assert len(tokenizer) == real_size.VOCAB_SIZE
    for token, index in real_size.SPECIAL_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == index
    processor = real_size.processor(tokenizer)
    # The poster at the 640 bucket, as the pipeline captions it.
    picture = Image.open(REPO / "examples" / "poster.png").convert("RGB").resize((544, 736))
    inputs = processor(text="<|vision_start|><|image_pad|><|vision_end|>", images=picture,
                       return_tensors="pt")
    image_tokens = int((inputs.input_ids == real_size.SPECIAL_IDS["<|image_pad|>"]).sum())
    assert 450 <= image_tokens <= 520  # (544/28) x (736/28) merged patches


def test_real_size_bench_refuses_without_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the bench would build the 54 GiB model")
    run = subprocess.run([sys.executable, str(REPO / "bench" / "qwen_modes.py"), "--real-size"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "needs a CUDA GPU" in run.stderr
    assert "Traceback" not in run.stderr
