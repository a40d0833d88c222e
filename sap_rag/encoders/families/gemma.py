"""Gemma backbones with a SigLIP tower: ColPali (PaliGemma) and ColGemma3.

Both stretch the page to a square and give one fixed square of image tokens, row-major.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..._compat import import_colpali_engine
from .base import FamilySpec, Grid, square_grid

# --- ColPali (PaliGemma) -----------------------------------------------------------------------


def _pali_text_model(model: nn.Module) -> nn.Module:
    return model.model.model.language_model


def _pali_image_token_id(config: Any) -> int:
    return int(config.image_token_index)


def _square(batch: dict, b: int, n: int, model: nn.Module, processor: Any) -> Grid:
    return square_grid(n)


def _pali_prepare(batch: dict[str, Any]) -> dict[str, Any]:
    # The processor returns `labels`, which would make the forward compute a loss, and the LM head
    # would produce full-vocabulary logits for every token; neither changes the embeddings.
    # token_type_ids stay: they give the image + prompt prefix its bidirectional mask.
    kwargs = {key: value for key, value in batch.items() if key != "labels"}
    kwargs["logits_to_keep"] = 1
    return kwargs


def _pali_backbone_forward(model: nn.Module, batch: dict) -> Any:
    from transformers.models.paligemma.modeling_paligemma import PaliGemmaModel

    kwargs = {key: value for key, value in batch.items() if key != "logits_to_keep"}
    return PaliGemmaModel.forward(
        model.model.model, **kwargs, output_attentions=True, return_dict=True, use_cache=False
    )


def _build_colpali(size, seed: int):
    from transformers import PaliGemmaConfig, SiglipImageProcessor

    from ..tiny import init_weights, train_tokenizer

    cem = import_colpali_engine()
    tokenizer = train_tokenizer(
        ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"],
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    side = max(2, int(size.max_visual_tokens**0.5))  # image tokens form a side x side square
    patch = 8
    image_processor = SiglipImageProcessor(size={"height": side * patch, "width": side * patch})
    image_processor.image_seq_length = side * side  # PaliGemmaProcessor reads it (real: 1024)
    processor = cem.ColPaliProcessor(image_processor=image_processor, tokenizer=tokenizer)
    vocab = len(processor.tokenizer)  # the processor adds 1,024 <loc> and 128 <seg> tokens
    config = PaliGemmaConfig(
        text_config=dict(
            model_type="gemma",
            vocab_size=vocab,
            hidden_size=size.hidden,
            intermediate_size=size.intermediate,
            num_hidden_layers=size.layers,
            num_attention_heads=size.heads,
            num_key_value_heads=size.kv_heads,
            head_dim=size.hidden // size.heads,
            max_position_embeddings=4096,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=size.vision_hidden,
            intermediate_size=2 * size.vision_hidden,
            num_hidden_layers=size.vision_layers,
            num_attention_heads=2,
            image_size=side * patch,
            patch_size=patch,
            vision_use_head=False,
        ),
        image_token_index=tokenizer.image_token_id,
        vocab_size=vocab,
        projection_dim=size.hidden,
        pad_token_id=tokenizer.pad_token_id,
    )
    return init_weights(cem.ColPali(config), seed), processor


# --- ColGemma3 ---------------------------------------------------------------------------------

# A minimal Gemma-3 chat template, same shape as the real one for user turns of images and text.
_GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<start_of_image>{% elif item['type'] == 'text' %}{{ item['text'] | trim }}"
    "{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _gemma3_text_model(model: nn.Module) -> nn.Module:
    return model.language_model


def _gemma3_image_token_id(config: Any) -> int:
    # The soft tokens; processor.image_token_id is the start-of-image marker.
    return int(config.image_token_id)


def _gemma3_backbone_forward(model: nn.Module, batch: dict) -> Any:
    from transformers.models.gemma3.modeling_gemma3 import Gemma3Model

    return Gemma3Model.forward(model, **batch, output_attentions=True, return_dict=True, use_cache=False)


def _build_colgemma3(size, seed: int):
    from transformers import Gemma3Config
    from transformers.models.gemma3 import Gemma3ImageProcessor

    from ..tiny import init_weights, train_tokenizer

    cem = import_colpali_engine()
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    specials += ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    tokenizer = train_tokenizer(
        specials,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        chat_template=_GEMMA3_CHAT_TEMPLATE,
        # Declared this way, the three survive save_pretrained / from_pretrained.
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    side = max(2, int(size.max_visual_tokens**0.5))
    patch, image_size = 8, 16 * side  # the projector average-pools the patch grid 2x2
    image_processor = Gemma3ImageProcessor(size={"height": image_size, "width": image_size}, do_pan_and_scan=False)
    processor = cem.ColGemmaProcessor3(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=side * side
    )
    config = Gemma3Config(
        text_config=dict(
            model_type="gemma3_text",
            vocab_size=len(processor.tokenizer),
            hidden_size=size.hidden,
            intermediate_size=size.intermediate,
            num_hidden_layers=size.layers,
            num_attention_heads=size.heads,
            num_key_value_heads=size.kv_heads,
            head_dim=size.hidden // size.heads,
            query_pre_attn_scalar=size.hidden // size.heads,
            max_position_embeddings=4096,
            # Real: window 1024, 5 sliding : 1 full. A short window here makes both kinds matter.
            sliding_window=32,
            layer_types=["sliding_attention", "full_attention"] * (size.layers // 2),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=size.vision_hidden,
            intermediate_size=2 * size.vision_hidden,
            num_hidden_layers=size.vision_layers,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch,
            vision_use_head=False,
        ),
        mm_tokens_per_image=side * side,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
    )
    # ColGemma3's init zeroes the image projector; init_weights redraws every parameter.
    return init_weights(cem.ColGemma3(config), seed), processor


SPECS = (
    FamilySpec(
        name="colpali",
        display="ColPali",
        model_types=("paligemma",),
        model_class="ColPali",
        processor_class="ColPaliProcessor",
        text_model=_pali_text_model,
        image_token_id=_pali_image_token_id,
        grid=_square,
        backbone_forward=_pali_backbone_forward,
        prepare_inputs=_pali_prepare,
        tiny=_build_colpali,
        architectures=("ColPali",),
        causal_visual=False,  # PaliGemma's prefix (image + prompt) attends both ways
    ),
    FamilySpec(
        name="colgemma3",
        display="ColGemma3",
        model_types=("gemma3",),
        model_class="ColGemma3",
        processor_class="ColGemmaProcessor3",
        text_model=_gemma3_text_model,
        image_token_id=_gemma3_image_token_id,
        grid=_square,
        backbone_forward=_gemma3_backbone_forward,
        tiny=_build_colgemma3,
        architectures=("ColGemma3",),
        causal_visual=False,  # Gemma3 lets an image's tokens attend each other both ways
    ),
)
