"""Tiny randomly initialised transformers models, saved to a folder like a real checkpoint.

The Hugging Face Hub is unreachable where the tests run, so every transformers backend is tested against
models built here from configs: the same ``from_pretrained`` code path as a real checkpoint, with weights
small enough to build in a fraction of a second. Outputs are random but deterministic (seeded) and
input-dependent.

Tokenizers cannot be downloaded either: :func:`tiny_clip_tokenizer` builds a real byte-level BPE tokenizer
with a character vocabulary, so that different texts give different token ids and different text embeddings.

Each builder is ``build_tiny_<name>(folder) -> folder``. Engineers append builders for their own models (and
name them in :data:`BUILDERS`); do not change what the existing ones build (other tests depend on their exact
shapes). Tests get a model with the session fixture ``tiny_model(name)`` (``tests/conftest.py``), which builds
each one once per session, on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

# The size of every tiny transformer (text towers, vision towers, ViT encoders): two layers of width 32.
TOWER: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}


def vision_tower(image_size: Any = 32, **extra: Any) -> dict[str, Any]:
    """A tiny ViT-style vision config (patch 8): 32 px images make a 4x4 patch grid."""
    return {**TOWER, "image_size": image_size, "patch_size": 8, **extra}


def clip_text_tower(tokenizer: Any, max_positions: int, **extra: Any) -> dict[str, Any]:
    """A tiny CLIP-style text config for :func:`tiny_clip_tokenizer`: pads with, and pools on, end-of-text."""
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return {
        **TOWER,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": max_positions,
        "eos_token_id": eos,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        "pad_token_id": eos,
        **extra,
    }


def _save(folder: Path, *parts: Any) -> Path:
    """``save_pretrained`` every part (model, tokenizer, processors) into ``folder``; returns the folder."""
    folder = Path(folder)
    for part in parts:
        part.save_pretrained(folder)
    return folder


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map (the base alphabet of byte-level BPE)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def tiny_clip_tokenizer(model_max_length: int = 32) -> Any:
    """A real CLIP byte-level BPE tokenizer with a 512-token character vocabulary plus a few merges.

    Every lower-case word is spelt out character by character (a handful of merges make common words
    shorter), so "a dog on a beach" and "a cat" give different ids. The end-of-text token is the id the tiny
    text towers must pool on (``text_config.eos_token_id``).
    """
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges: Any = [("t", "h"), ("th", "e</w>"), ("o", "n</w>")]
    vocab_list += ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def build_tiny_clip(folder: Path, *, projection_dim: int = 16, image_size: int = 32, seed: int = 0) -> Path:
    """A tiny CLIP (2-layer towers, 32 px images, patch 8) with its tokenizer and image processor."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    tokenizer = tiny_clip_tokenizer()
    config = CLIPConfig(
        text_config=clip_text_tower(tokenizer, 32),
        vision_config=vision_tower(image_size),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return _save(folder, model, tokenizer, image_processor)


def build_tiny_siglip(folder: Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A tiny SigLIP (sigmoid scoring, last-token text pooling) with the character BPE tokenizer.

    Real SigLIP checkpoints ship a SentencePiece tokenizer (which needs the ``sentencepiece`` package); the
    tokenizer is not what these tests exercise, so the tiny model reuses the CLIP-style one and pads to
    ``max_length`` like SigLIP does.
    """
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    tokenizer = tiny_clip_tokenizer(model_max_length=16)
    config = SiglipConfig(text_config=clip_text_tower(tokenizer, 16), vision_config=vision_tower(image_size))
    torch.manual_seed(seed)
    model = SiglipModel(config)
    # Random init leaves scale 0 and bias 0, i.e. every sigmoid score 0.5; real checkpoints learn about
    # log(110) and -16. Spread the tiny model's scores out the same way so that thresholds mean something.
    with torch.no_grad():
        model.logit_scale.fill_(float(torch.log(torch.tensor(30.0))))
        model.logit_bias.fill_(-3.0)
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    return _save(folder, model, tokenizer, image_processor)


def build_tiny_dinov2(folder: Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A tiny DINOv2 image encoder (no text tower) with its image processor."""
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    tower = vision_tower(image_size)
    del tower["intermediate_size"]  # DINOv2 sizes its MLP by a ratio instead: 2 x 32 = 64
    config = Dinov2Config(mlp_ratio=2, **tower)
    torch.manual_seed(seed)
    model = Dinov2Model(config)
    image_processor = BitImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return _save(folder, model, image_processor)


def build_tiny_vit_classifier(
    folder: Path,
    labels: tuple[str, ...] = ("tabby, tabby cat", "motor scooter", "espresso", "rocket"),
    seed: int = 0,
) -> Path:
    """A tiny fixed-label ViT image classifier whose ``id2label`` is ``labels``."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    config = ViTConfig(
        **vision_tower(),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(seed)
    model = ViTForImageClassification(config)
    return _save(folder, model, ViTImageProcessorPil(size={"height": 32, "width": 32}))


# -- captioning, VQA and detection models (caption / vqa / detect backends) ----------------------------------

# Words the tiny generative models can say: real words (decoded text reads as words, one token each), "yes"
# and "no" among them (so VQA answers can map to keywords).
GEN_WORDS = [
    *("a", "an", "the", "of", "on", "in", "with", "and", "is", "there", "yes", "no", "cat", "dog", "person"),
    *("man", "woman", "people", "sitting", "standing", "red", "blue", "green", "table", "cup", "coffee"),
    *("rocket", "motorcycle", "street", "sky", "photo", "picture", "two", "one"),
]


def tiny_word_tokenizer(
    specials: tuple[str, ...], *, eos: str, pad: str = "<pad>", bos: str | None = None
) -> Any:
    """A real fast tokenizer over a word-level vocabulary (``specials`` first, then :data:`GEN_WORDS`): every
    word is one token, so the number of generated tokens is the number of words in the decoded text."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {
        tok: i for i, tok in enumerate(dict.fromkeys((pad, "<unk>", *specials, *GEN_WORDS, "?", ".", ",")))
    }
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    kwargs = {"bos_token": bos} if bos else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=pad, unk_token="<unk>", eos_token=eos, **kwargs
    )


def _never_said(tokenizer: Any) -> list[int]:
    """Special tokens other than the end token: what a trained model never generates (so neither may the tiny
    ones: then every generated token but the end is a word of the decoded text)."""
    return sorted(set(tokenizer.all_special_ids) - {tokenizer.eos_token_id})


def tiny_bert_tokenizer(folder: Path) -> Any:
    """BLIP's real tokenizer class (``BertTokenizer``) over a vocab file of whole words: ``[DEC]`` starts a
    caption, ``[SEP]`` ends it."""
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *GEN_WORDS, "?", ".", ","]) + "\n"
    )
    return BertTokenizer(str(vocab), bos_token="[DEC]")


def _blip_config(tokenizer: Any, init: float) -> Any:
    from transformers import BlipConfig

    ids = tokenizer.convert_tokens_to_ids
    return BlipConfig(
        text_config={
            **TOWER, "vocab_size": len(tokenizer), "max_position_embeddings": 64, "initializer_range": init,
            "bos_token_id": ids("[DEC]"), "pad_token_id": ids("[PAD]"), "sep_token_id": ids("[SEP]"),
            "eos_token_id": ids("[SEP]"),
        },
        vision_config=vision_tower(initializer_range=init),
        projection_dim=16,
        image_text_hidden_size=16,
    )  # fmt: skip


def _build_tiny_blip(folder: Path, head: str, seed: int, init: float) -> Path:
    import transformers
    from transformers import BlipImageProcessorPil, BlipProcessor

    folder = Path(folder)
    tokenizer = tiny_bert_tokenizer(folder / "_vocab")
    torch.manual_seed(seed)
    # a wide initialisation makes the random model's output depend visibly on the image and the question
    model = getattr(transformers, head)(_blip_config(tokenizer, init))
    with torch.no_grad():
        # a trained model never says [MASK] or [PAD]; this one must not either, so every generated token but
        # the end is a word of the decoded text
        never = tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[MASK]", "[DEC]"])
        model.text_decoder.cls.predictions.bias[never] = -1e4
    return _save(
        folder, model, BlipProcessor(BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer)
    )


def build_tiny_blip_caption(folder: Path, *, seed: int = 2, init: float = 0.1) -> Path:
    """A tiny BLIP captioning model (``BlipForConditionalGeneration``): BERT tokenizer, 32 px images."""
    return _build_tiny_blip(folder, "BlipForConditionalGeneration", seed, init)


def build_tiny_blip_vqa(folder: Path, *, seed: int = 0, init: float = 0.1) -> Path:
    """A tiny BLIP question-answering model (``BlipForQuestionAnswering``), the captioner's tokenizer."""
    return _build_tiny_blip(folder, "BlipForQuestionAnswering", seed, init)


def build_tiny_vit_gpt2(folder: Path, *, seed: int = 0, init: float = 0.3) -> Path:
    """A tiny VisionEncoderDecoder (ViT encoder + GPT-2 decoder with cross-attention), like vit-gpt2: an image
    processor and a tokenizer but no joint processor."""
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    tokenizer = tiny_word_tokenizer(("<|endoftext|>",), eos="<|endoftext|>", bos="<|endoftext|>")
    eos = tokenizer.eos_token_id
    encoder = ViTConfig(**vision_tower(initializer_range=init))
    decoder = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64, add_cross_attention=True,
        is_decoder=True, bos_token_id=eos, eos_token_id=eos, initializer_range=init,
    )  # fmt: skip
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = config.pad_token_id = config.eos_token_id = eos
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config)
    generation = model.generation_config
    generation.decoder_start_token_id = generation.pad_token_id = generation.eos_token_id = eos
    generation.suppress_tokens = _never_said(tokenizer)
    return _save(folder, model, tokenizer, ViTImageProcessorPil(size={"height": 32, "width": 32}))


# A chat template of the usual shape: the image placeholder, the user's text, then the assistant's turn.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% else %} {{ c['text'] }} {% endif %}{% endfor %}<end_of_utterance> {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def build_tiny_idefics3(folder: Path, *, seed: int = 0, init: float = 0.3) -> Path:
    """A tiny Idefics3 (the architecture of SmolVLM-256M/500M-Instruct): SigLIP-style vision tower, pixel
    shuffle, Llama text model, an ``Idefics3Processor`` with a chat template; 32 px tiles."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    image_tokens = ("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>")
    grid = tuple(f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6))
    tokenizer = tiny_word_tokenizer(
        ("<s>", *image_tokens, *grid, "user", "assistant", ":"), eos="<end_of_utterance>", bos="<s>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [*image_tokens, *grid]})
    ids = tokenizer.convert_tokens_to_ids
    config = Idefics3Config(
        vision_config=vision_tower(initializer_range=init),
        text_config={
            **TOWER, "model_type": "llama", "vocab_size": len(tokenizer), "num_key_value_heads": 2,
            "max_position_embeddings": 256, "initializer_range": init, "pad_token_id": ids("<pad>"),
            "bos_token_id": ids("<s>"), "eos_token_id": ids("<end_of_utterance>"),
        },
        image_token_id=ids("<image>"),
        scale_factor=2,
        pad_token_id=ids("<pad>"),
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    generation = model.generation_config
    generation.pad_token_id, generation.bos_token_id = ids("<pad>"), ids("<s>")
    generation.eos_token_id = ids("<end_of_utterance>")
    generation.suppress_tokens = _never_said(tokenizer)
    # Like SmolVLM: the photo is resized (longest edge 96) and split into 32 px tiles plus a global view, so
    # photos of different shapes take different numbers of image tokens (and a batch needs padding).
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 96}, max_image_size={"longest_edge": 32}, do_image_splitting=True
    )
    # (32 / 8)^2 patches, pixel-shuffled by scale_factor 2 -> 4 image tokens per tile
    processor = Idefics3Processor(
        image_processor, tokenizer, image_seq_len=4, chat_template=TINY_CHAT_TEMPLATE
    )
    return _save(folder, model, processor)


DETECT_LABELS = ("cat", "motorcycle", "person", "N/A", "cup")
"""Class names of the tiny closed-set detectors; id 3 is COCO-style unused ("N/A")."""


def _detect_label_maps() -> dict[str, Any]:
    return {
        "id2label": dict(enumerate(DETECT_LABELS)),
        "label2id": {n: i for i, n in enumerate(DETECT_LABELS)},
    }


def build_tiny_detr(folder: Path, *, seed: int = 1, init: float = 0.3) -> Path:
    """A tiny DETR with a transformers ResNet backbone (``use_timm_backbone=False``: no timm/torchvision)."""
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessorPil, ResNetConfig

    backbone = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], out_features=["stage4"]
    )
    config = DetrConfig(
        use_timm_backbone=False, backbone_config=backbone, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        num_queries=12, init_std=init, **_detect_label_maps(),
    )  # fmt: skip
    torch.manual_seed(seed)
    model = DetrForObjectDetection(config)
    return _save(folder, model, DetrImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}))


def build_tiny_rt_detr(folder: Path, *, seed: int = 1, init: float = 0.3) -> Path:
    """A tiny RT-DETR (ResNet backbone, one encoder and one decoder layer, 12 queries, 64x64 input)."""
    from transformers import (
        RTDetrConfig,
        RTDetrForObjectDetection,
        RTDetrImageProcessorPil,
        RTDetrResNetConfig,
    )

    backbone = RTDetrResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 32],
        depths=[1, 1, 1, 1],
        out_features=["stage2", "stage3", "stage4"],
    )
    config = RTDetrConfig(
        backbone_config=backbone, encoder_hidden_dim=16, encoder_in_channels=[16, 16, 32],
        feat_strides=[8, 16, 32], encoder_layers=1, encoder_ffn_dim=32, encoder_attention_heads=2, d_model=16,
        num_queries=12, decoder_layers=1, decoder_ffn_dim=32, decoder_attention_heads=2,
        decoder_in_channels=[16, 16, 16], num_feature_levels=3, decoder_n_points=2, num_denoising=0,
        initializer_range=init, **_detect_label_maps(),
    )  # fmt: skip
    torch.manual_seed(seed)
    model = RTDetrForObjectDetection(config)
    return _save(folder, model, RTDetrImageProcessorPil(size={"height": 64, "width": 64}))


def build_tiny_yolos(folder: Path, *, seed: int = 1, init: float = 0.3) -> Path:
    """A tiny YOLOS (ViT with 12 detection tokens)."""
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessorPil

    config = YolosConfig(
        **vision_tower([32, 32]), num_detection_tokens=12, initializer_range=init, **_detect_label_maps()
    )
    torch.manual_seed(seed)
    model = YolosForObjectDetection(config)
    return _save(folder, model, YolosImageProcessorPil(size={"shortest_edge": 32, "longest_edge": 64}))


def _build_tiny_owl(folder: Path, version: int, seed: int, init: float) -> Path:
    import transformers

    prefix = "Owlv2" if version == 2 else "OwlViT"
    tokenizer = tiny_clip_tokenizer(model_max_length=16)
    config = getattr(transformers, f"{prefix}Config")(
        text_config=clip_text_tower(tokenizer, 16, initializer_range=init),
        vision_config=vision_tower(initializer_range=init),
        projection_dim=32,  # the class head compares image features (vision width) with text embeddings
    )
    torch.manual_seed(seed)
    model = getattr(transformers, f"{prefix}ForObjectDetection")(config)
    with torch.no_grad():
        # A random box head saturates the sigmoid (every box the whole frame or nothing); a damped one leaves
        # each patch its prior box (OWL's box bias: a box around the patch) moved a little by the image.
        model.box_head.dense2.weight.mul_(0.02)
        model.box_head.dense2.bias.zero_()
    if version == 2:
        image_processor = transformers.Owlv2ImageProcessorPil(size={"height": 32, "width": 32})
    else:
        image_processor = transformers.OwlViTImageProcessorPil(
            size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32}
        )
    processor = getattr(transformers, f"{prefix}Processor")(
        image_processor=image_processor, tokenizer=tokenizer
    )
    return _save(folder, model, processor)


def build_tiny_owlvit(folder: Path, *, seed: int = 0, init: float = 0.05) -> Path:
    """A tiny OWL-ViT open-vocabulary detector (CLIP-style towers, 4x4 patch grid = 16 boxes)."""
    return _build_tiny_owl(folder, 1, seed, init)


def build_tiny_owlv2(folder: Path, *, seed: int = 0, init: float = 0.05) -> Path:
    """A tiny OWLv2 open-vocabulary detector (pads images to a square, unlike OWL-ViT)."""
    return _build_tiny_owl(folder, 2, seed, init)


# -- every builder by name, built once ------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "clip": build_tiny_clip,
    "siglip": build_tiny_siglip,
    "dinov2": build_tiny_dinov2,
    "vit": build_tiny_vit_classifier,
    "blip": build_tiny_blip_caption,
    "blip_vqa": build_tiny_blip_vqa,
    "vit_gpt2": build_tiny_vit_gpt2,
    "idefics3": build_tiny_idefics3,
    "detr": build_tiny_detr,
    "detr_na": partial(build_tiny_detr, seed=2),  # this seed labels every box "N/A" (COCO's unused ids)
    "rt_detr": build_tiny_rt_detr,
    "yolos": build_tiny_yolos,
    "owlvit": build_tiny_owlvit,
    "owlv2": build_tiny_owlv2,
}
"""The tiny models tests ask for by name (``tiny_model("clip")``)."""


class TinyModels:
    """``TinyModels(root)(name)`` -> the folder of :data:`BUILDERS` ``[name]`` under ``root``, built on the first
    call and reused after. Tests must not change these folders: copy one to damage it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._built: dict[str, Path] = {}

    def __call__(self, name: str) -> Path:
        if name not in self._built:
            self._built[name] = BUILDERS[name](self.root / name)
        return self._built[name]


# -- Kosmos-2, PaliGemma, Florence-2: task prefixes, markup in the output, grounded phrases -------------------


def tiny_sentencepiece_tokenizer(
    words: tuple[str, ...],
    *,
    bos: str,
    eos: str,
    pad: str = "<pad>",
    specials: tuple[str, ...] = (),
    added: tuple[str, ...] = (),
    **kwargs: Any,
) -> Any:
    """A real fast tokenizer that splits and decodes like SentencePiece (``▁word`` pieces, Metaspace), over a
    word-level vocabulary: ``pad``, ``<unk>``, ``bos``, ``eos`` and ``specials``, then ``words`` and
    :data:`GEN_WORDS` as pieces, then punctuation; ``added`` become added tokens.

    As with the real tokenizers of Kosmos-2, PaliGemma and Florence-2 (SentencePiece or BPE), the markup tokens
    their processors add (``<phrase>``, ``<patch_index_0044>``, ``<loc0012>``, ``<loc_12>``) decode without
    spaces around them, so the processors' own post-processing can read the output. Needs only ``tokenizers``
    (no ``sentencepiece`` model file)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["▁" + w for w in (*words, *GEN_WORDS)]
    vocab_list = (pad, "<unk>", bos, eos, *specials, *pieces, "?", ".", ",", ":", ";")
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(prepend_scheme="always"), pre_tokenizers.Punctuation()]
    )
    backend.decoder = decoders.Metaspace(prepend_scheme="always")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=pad, unk_token="<unk>", bos_token=bos, eos_token=eos, **kwargs
    )
    if added:
        tokenizer.add_tokens(list(added))
    return tokenizer


GROUNDED_NOUNS = ("cat", "dog", "person", "man", "woman", "table", "cup", "rocket", "motorcycle", "sky")
"""What the tiny grounding models (Kosmos-2, Florence-2) name the phrases they locate."""
STEER = 50.0
"""The logit bias that steers a tiny random model through the grammar of grounded output (see
:func:`build_tiny_kosmos2`): large enough to win over any random logit, and the choice among the steered
tokens is still the model's own (random, image-dependent)."""


def _bias(*keys: tuple[int, ...]) -> list[list[Any]]:
    """``sequence_bias`` entries (JSON-able, as generation_config.json stores them): each key's last token gets
    :data:`STEER` after the tokens before it."""
    return [[list(key), STEER] for key in keys]


def build_tiny_kosmos2(folder: Path, *, seed: int = 0, init: float = 1.0) -> Path:
    """A tiny Kosmos-2 (``Kosmos2ForConditionalGeneration``) with a real ``Kosmos2Processor`` (which adds
    ``<grounding>``, ``<phrase>``, ``<object>``, ``<patch_index_0000>`` ... ``<patch_index_1023>`` to the
    tokenizer), 32 px images, 64 latent image tokens.

    A trained Kosmos-2 prompted with ``<grounding>An image of`` links the noun phrases of its caption to
    boxes: ``<phrase> a cat</phrase><object><patch_index_0044><patch_index_0863></object>``. The random one is
    steered to do the same by its generation_config.json (``sequence_bias``, which ``generate`` applies): after
    "of" it opens a phrase, names one of :data:`GROUNDED_NOUNS`, closes the phrase and gives a box from a
    top-left patch to a bottom-right one. Which noun and which patches stays the model's (image-dependent)
    choice; what follows is its random text."""
    from transformers import (
        CLIPImageProcessorPil,
        Kosmos2Config,
        Kosmos2ForConditionalGeneration,
        Kosmos2Processor,
    )

    tokenizer = tiny_sentencepiece_tokenizer(
        ("An", "image", "Describe", "this", "detail", "Question", "Answer"), bos="<s>", eos="</s>"
    )
    image_processor = CLIPImageProcessorPil(size={"height": 32, "width": 32}, do_center_crop=False)
    processor = Kosmos2Processor(image_processor, tokenizer)  # adds the tag and patch index tokens
    ids = tokenizer.convert_tokens_to_ids
    config = Kosmos2Config(
        text_config={
            "vocab_size": len(tokenizer), "embed_dim": 32, "ffn_dim": 64, "layers": 2, "attention_heads": 2,
            "max_position_embeddings": 256, "init_std": init, "pad_token_id": ids("<pad>"),
            "bos_token_id": ids("<s>"), "eos_token_id": ids("</s>"),
        },
        vision_config=vision_tower(initializer_range=init),
        latent_query_num=64,  # the processor's number of image tokens
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Kosmos2ForConditionalGeneration(config)
    generation = model.generation_config
    generation.pad_token_id, generation.bos_token_id = ids("<pad>"), ids("<s>")
    generation.eos_token_id = ids("</s>")
    generation.suppress_tokens = _never_said(tokenizer)

    def patch(row: int, col: int) -> int:
        return int(ids(f"<patch_index_{row * 32 + col:04d}>"))

    top_left = [patch(r, c) for r in (0, 3, 6, 9) for c in (0, 3, 6, 9)]
    bottom_right = [patch(r, c) for r in (22, 25, 28, 31) for c in (22, 25, 28, 31)]
    nouns = [ids("▁" + n) for n in GROUNDED_NOUNS]
    phrase, end_phrase, obj, end_obj = ids(["<phrase>", "</phrase>", "<object>", "</object>"])
    generation.sequence_bias = _bias(
        (ids("▁of"), phrase),
        *((phrase, n) for n in nouns),
        *((phrase, n, end_phrase) for n in nouns),
        (end_phrase, obj),
        *((obj, a) for a in top_left),
        *((obj, a, b) for a in top_left for b in bottom_right),
        *((a, b, end_obj) for a in top_left for b in bottom_right),
    )
    return _save(folder, model, processor)


def build_tiny_paligemma(folder: Path, *, seed: int = 0, init: float = 0.3) -> Path:
    """A tiny PaliGemma (SigLIP vision tower, Gemma text model) with a real ``PaliGemmaProcessor`` (which adds
    ``<image>`` and the ``<loc0000>``/``<seg000>`` tokens), 32 px images = 16 image tokens. Like a trained
    captioner, it never says its location and segmentation tokens for a caption, and never says nothing."""
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
    )

    tokenizer = tiny_sentencepiece_tokenizer(
        ("caption", "describe", "answer", "detect", "en"), bos="<bos>", eos="<eos>", added=("\n",)
    )
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16  # (32 / 8)^2 patches
    processor = PaliGemmaProcessor(image_processor, tokenizer)  # adds <image>, <loc0000>..., <seg000>...
    ids = tokenizer.convert_tokens_to_ids
    config = PaliGemmaConfig(
        vision_config=vision_tower(initializer_range=init, model_type="siglip_vision_model"),
        text_config={
            **TOWER, "model_type": "gemma", "vocab_size": len(tokenizer), "num_key_value_heads": 1,
            "head_dim": 16, "max_position_embeddings": 128, "initializer_range": init,
            "pad_token_id": ids("<pad>"), "bos_token_id": ids("<bos>"), "eos_token_id": ids("<eos>"),
        },
        image_token_index=ids("<image>"),
        vocab_size=len(tokenizer),
        projection_dim=32,
        hidden_size=32,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config)
    generation = model.generation_config
    generation.pad_token_id, generation.bos_token_id = ids("<pad>"), ids("<bos>")
    generation.eos_token_id = ids("<eos>")
    # "\n" ends the prompt; markup: what "detect en" or "segment en" would say
    markup = [i for t, i in tokenizer.get_vocab().items() if t.startswith(("<loc", "<seg")) or t == "\n"]
    generation.suppress_tokens = sorted({*_never_said(tokenizer), *markup})
    generation.min_new_tokens = 2  # nor does it end a caption before it starts
    return _save(folder, model, processor)


FLORENCE_POST_PROCESSOR = {
    "ocr": {"pattern": r"(.+?)" + r"<loc_(\d+)>" * 8, "area_threshold": 0.0},
    "phrase_grounding": {"banned_grounding_tokens": ["it", "the image"]},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}
"""The post-processor config Florence-2 checkpoints ship in processor_config.json (a shorter banned list)."""


def build_tiny_florence2(folder: Path, *, seed: int = 0, init: float = 1.0) -> Path:
    """A tiny Florence-2 as transformers implements it natively (``Florence2ForConditionalGeneration``, the
    ``florence-community`` checkpoints): DaViT vision tower (one stage, 32 px -> 8x8 + 1 = 65 image tokens),
    BART encoder-decoder, a real ``Florence2Processor`` (task tokens -> instructions, ``<loc_0>`` ...
    ``<loc_999>``, ``<image>``).

    A trained Florence-2 answers region tasks with ``phrase<loc_x0><loc_y0><loc_x1><loc_y1>``. The random one
    is steered to always answer that way (``sequence_bias`` in its generation_config.json): one of
    :data:`GROUNDED_NOUNS`, a top-left corner from a few low bins, a bottom-right one from a few high bins, the
    end. Its captions therefore carry location markup too, which reading them must drop."""
    from transformers import (
        CLIPImageProcessorPil,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    # the words of the instructions its processor turns task tokens into
    prompt_words = (
        "What", "does", "image", "describe", "Describe", "with", "paragraph", "what", "shown", "Locate",
        "objects", "category", "name", "their", "descriptions", "phrases", "caption",
    )  # fmt: skip
    tokenizer = tiny_sentencepiece_tokenizer(
        prompt_words,
        bos="<s>",
        eos="</s>",
        specials=("<image>",),
        added=tuple(f"<loc_{i}>" for i in range(1000)),
        extra_special_tokens={"image_token": "<image>"},
    )
    image_processor = CLIPImageProcessorPil(size={"height": 32, "width": 32}, do_center_crop=False)
    image_processor.image_seq_length = 65
    processor = Florence2Processor(image_processor, tokenizer, post_processor_config=FLORENCE_POST_PROCESSOR)
    ids = tokenizer.convert_tokens_to_ids
    bos, eos, pad = ids("<s>"), ids("</s>"), ids("<pad>")
    config = Florence2Config(
        text_config={
            "model_type": "bart", "vocab_size": len(tokenizer), "d_model": 32, "encoder_layers": 1,
            "decoder_layers": 1, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "encoder_attention_heads": 2,
            "decoder_attention_heads": 2, "max_position_embeddings": 128, "init_std": init,
            "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad, "decoder_start_token_id": eos,
            "forced_bos_token_id": bos, "forced_eos_token_id": eos,
        },
        vision_config={
            "depths": [1], "patch_size": [7], "patch_stride": [4], "patch_padding": [3],
            "patch_prenorm": [False], "embed_dim": [32], "num_heads": [2], "num_groups": [2], "window_size": 4,
            "projection_dim": 32, "drop_path_rate": 0.0, "initializer_range": init,
        },
        image_token_id=ids("<image>"),
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config)
    generation = model.generation_config
    generation.bos_token_id, generation.eos_token_id, generation.pad_token_id = bos, eos, pad
    generation.decoder_start_token_id, generation.forced_bos_token_id = eos, bos
    generation.forced_eos_token_id = eos
    generation.suppress_tokens = [i for i in _never_said(tokenizer) if i != bos]  # <s> is forced first
    low = [ids(f"<loc_{v}>") for v in (50, 150, 250, 350)]
    high = [ids(f"<loc_{v}>") for v in (650, 750, 850, 950)]
    nouns = [ids("▁" + n) for n in GROUNDED_NOUNS]
    generation.sequence_bias = _bias(
        *((bos, n) for n in nouns),
        *((n, a) for n in nouns for a in low),
        *((n, a, b) for n in nouns for a in low for b in low),
        *((a, b, c) for a in low for b in low for c in high),
        *((b, c, d) for b in low for c in high for d in high),
        *((c, d, eos) for c in high for d in high),
    )
    return _save(folder, model, processor)


BUILDERS.update(
    {
        "kosmos2": build_tiny_kosmos2,
        "paligemma": build_tiny_paligemma,
        "florence2": build_tiny_florence2,
    }
)
