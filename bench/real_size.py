"""The real Qwen-Image-Layered architecture with random weights, built in memory (no download).

Random weights cost the same time and memory as the real ones (only the pictures are noise),
so this measures what users' GPUs will do without the 58 GB checkpoint. Sizes are those of
the published model: transformer 20.43B parameters (60 layers, 24 heads x 128,
joint_attention_dim 3584, axes_dims_rope (16, 56, 56), layer-3D RoPE, additional t cond), the
text encoder the shape of Qwen2.5-VL-7B (8.29B), the VAE base_dim 96, z_dim 16, RGBA input
(0.13B).

The tokenizer is the byte-level one of the tiny test pipeline, padded to the real vocabulary
with the real special-token ids: text prompts come out about 4x longer in tokens than with
the real BPE (text encoding costs a little more), while the picture's tokens for the caption
are the real ones (the real image processor).
"""

from __future__ import annotations

from typing import Any

VOCAB_SIZE = 152064
SPECIAL_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
TRANSFORMER = {
    "patch_size": 2,
    "in_channels": 64,
    "out_channels": 16,
    "num_layers": 60,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 3584,
    "guidance_embeds": False,
    "axes_dims_rope": (16, 56, 56),
    "use_layer3d_rope": True,
    "use_additional_t_cond": True,
}
TEXT = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "rope_type": "default", "mrope_section": [16, 24, 24]},
    "vocab_size": VOCAB_SIZE,
    "tie_word_embeddings": False,
}
VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 3584,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "in_chans": 3,
    "hidden_act": "silu",
}
VAE = {
    "base_dim": 96,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "input_channels": 4,
}
# Parameter counts of the published model (billions), which the configs above must give.
PARAMETERS_B = {"transformer": 20.43, "text_encoder": 8.29, "vae": 0.13}


def tokenizer() -> Any:
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: index for index, char in enumerate(alphabet)}
    by_id = {index: token for token, index in SPECIAL_IDS.items()}
    for index in range(len(alphabet), VOCAB_SIZE):
        vocab[by_id.get(index, f"<|filler_{index}|>")] = index
    made = Qwen2Tokenizer(vocab=vocab, merges=[])
    made.add_special_tokens({"additional_special_tokens": list(SPECIAL_IDS)[1:]})
    return made


def processor(made_tokenizer: Any) -> Any:
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    return Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(),
                            tokenizer=made_tokenizer, video_processor=Qwen2VLVideoProcessor())


def components(device: Any = "cpu", dtype: Any = None) -> dict[str, Any]:
    """The three models, random weights, built directly on `device` in `dtype` (bf16).

    On the "meta" device nothing is allocated: that is how the tests check the sizes.
    """
    import torch
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    dtype = dtype or torch.bfloat16
    ids = SPECIAL_IDS
    config = Qwen2_5_VLConfig(
        text_config={**TEXT, "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"], "bos_token_id": ids["<|endoftext|>"]},
        vision_config=VISION,
        hidden_size=TEXT["hidden_size"],
        vocab_size=VOCAB_SIZE,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            built = {
                "transformer": QwenImageTransformer2DModel(**TRANSFORMER),
                "text_encoder": Qwen2_5_VLForConditionalGeneration(config),
                "vae": AutoencoderKLQwenImage(**VAE),
            }
    finally:
        torch.set_default_dtype(before)
    for model in built.values():
        model.eval().requires_grad_(False)
    return built


def parameters_b(model: Any) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e9


def build_pipeline(device: Any = "cpu", dtype: Any = None) -> Any:
    """The whole `QwenImageLayeredPipeline`, random weights, on `device`."""
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageLayeredPipeline

    made = tokenizer()
    parts = components(device, dtype)
    pipe = QwenImageLayeredPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(base_shift=0.5, max_shift=0.9,
                                                  base_image_seq_len=256,
                                                  max_image_seq_len=8192, shift_terminal=0.02,
                                                  use_dynamic_shifting=True),
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=made,
        processor=processor(made),
        transformer=parts["transformer"],
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
