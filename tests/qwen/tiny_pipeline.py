"""A tiny random-weight Qwen-Image-Layered pipeline, built offline, for tests and benchmarks.

The real weights are tens of GB and the hub is unreachable, yet the code path that matters
(folder checks, `from_pretrained`, captioning, the denoising loop with its callback, VAE decode,
refinement) must really run. So the same component classes are built here from configs tiny
enough to save in a few MB, with a byte-level tokenizer made in memory, and written with
`save_pretrained` exactly like a downloaded snapshot.

The sizes are small ones found to run end to end (diffusers 0.42): the VAE's `z_dim` must not be 4,
because the pipeline treats any 4-channel tensor as ready-made latents and our input is RGBA.
"""

from __future__ import annotations

from pathlib import Path

# Special tokens the Qwen2.5-VL chat templates use; ids follow the 256 byte tokens.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
TEXT_HIDDEN = 16
Z_DIM = 8


def _tokenizer():
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: index for index, char in enumerate(alphabet)}
    for offset, token in enumerate(SPECIAL_TOKENS):
        vocab[token] = len(alphabet) + offset
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    return tokenizer


def _processor(tokenizer):
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    # A small pixel budget keeps the captioning pass cheap: 4x4 merged patches at most.
    budget = 28 * 28 * 16
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=budget)
    video_processor = Qwen2VLVideoProcessor(min_pixels=28 * 28 * 4, max_pixels=budget)
    return Qwen2VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor
    )


def _text_encoder(tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": len(tokenizer),
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": None,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": TEXT_HIDDEN,
        },
        hidden_size=TEXT_HIDDEN,
        vocab_size=len(tokenizer),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=None,
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def build_tiny_pipeline(seed: int = 0):
    """The pipeline object, random weights, float32 on the CPU."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageLayeredPipeline,
        QwenImageTransformer2DModel,
    )

    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=Z_DIM * 4,
        out_channels=Z_DIM,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_HIDDEN,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
        use_layer3d_rope=True,
        use_additional_t_cond=True,
    )
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=Z_DIM,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        input_channels=4,
        latents_mean=[0.0] * Z_DIM,
        latents_std=[1.0] * Z_DIM,
    )
    scheduler = FlowMatchEulerDiscreteScheduler()
    tokenizer = _tokenizer()
    processor = _processor(tokenizer)
    text_encoder = _text_encoder(tokenizer)
    # Captioning with random weights would ramble for the pipeline's full 512 new tokens.
    text_encoder.generation_config.max_new_tokens = 24
    return QwenImageLayeredPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        transformer=transformer,
    )


def save_tiny_pipeline(folder: Path, seed: int = 0, max_shard_size: str = "300KB") -> Path:
    """Build the tiny pipeline and write it like a hub snapshot (safetensors, configs).

    The small shard size splits the transformer and the VAE into several shards with an
    index.json, as the real 40 GB checkpoint is, so sharded loading and shard checks run too.
    """
    pipe = build_tiny_pipeline(seed)
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True, max_shard_size=max_shard_size)
    return folder


if __name__ == "__main__":
    import sys

    out = save_tiny_pipeline(Path(sys.argv[1]))
    print(out)
