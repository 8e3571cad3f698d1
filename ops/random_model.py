"""Write a random-weight emotion2vec model directory in FunASR's format.

Real weights can't be downloaded where there is no hub access, so tests and
benchmarks run the real loading and inference code on checkpoints made here:
``tiny`` for tests, ``large`` with emotion2vec+ large's architecture (same
compute, meaningless answers) for benchmarks. The directory name and
``emoq_random_model.json`` say what it is; results name their model.

    python -m ops.random_model --size tiny|large OUT_DIR
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import torch
import yaml

# emotion2vec+ token order (FunASR's tokens.txt for the 9-class models).
TOKENS = (
    "生气/angry",
    "厌恶/disgusted",
    "恐惧/fearful",
    "开心/happy",
    "中立/neutral",
    "其他/other",
    "难过/sad",
    "吃惊/surprised",
    "<unk>",
)

_AUDIO = {
    "type": "AUDIO",
    "extractor_mode": "layer_norm",
    "feature_encoder_spec": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",
    "conv_pos_width": 95,
    "conv_pos_groups": 16,
    "conv_pos_depth": 5,
    "conv_pos_pre_ln": False,
    "prenet_depth": 4,
    "prenet_layerdrop": 0.0,
    "prenet_dropout": 0.0,
    "start_drop_path_rate": 0.0,
    "end_drop_path_rate": 0.0,
    "model_depth": 8,
    "num_extra_tokens": 10,
    "init_extra_token_zero": False,
    "use_alibi_encoder": True,
    "learned_alibi": False,
    "alibi_max_pos": None,
    "alibi_scale": 1.0,
    "learned_alibi_scale": True,
    "learned_alibi_scale_per_head": True,
    "learned_alibi_scale_per_layer": True,
    "num_alibi_heads": 16,
    "local_grad_mult": 1.0,
    "decoder": None,
    "mask_prob": 0.0,
    "inverse_mask": False,
    "add_masks": False,
    "keep_masked_pct": 0.0,
    "encoder_zero_mask": True,
    "mask_noise_std": 0.01,
    "mask_channel_prob": 0.0,
}

LARGE: dict[str, Any] = {
    "embed_dim": 1024,
    "depth": 8,
    "num_heads": 16,
    "mlp_ratio": 4.0,
    "norm_eps": 1e-05,
    "norm_affine": True,
    "encoder_dropout": 0.0,
    "post_mlp_drop": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "dropout_input": 0.0,
    "layerdrop": 0.0,
    "layer_norm_first": False,
    "average_top_k_layers": 8,
    "end_of_block_targets": False,
    "clone_batch": 1,
    "start_drop_path_rate": 0.0,
    "end_drop_path_rate": 0.0,
    "loss_beta": 0.0,
    "loss_scale": None,
    "normalize": True,
    "modalities": {"audio": _AUDIO},
}


def model_conf(size: str) -> dict:
    conf = copy.deepcopy(LARGE)
    if size == "tiny":
        conf.update(embed_dim=64, depth=2, num_heads=4)
        conf["modalities"]["audio"].update(
            feature_encoder_spec="[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32,2,2)] + [(32,2,2)]",
            conv_pos_groups=4,
            conv_pos_depth=2,
            conv_pos_width=16,
            prenet_depth=1,
            model_depth=2,
            num_alibi_heads=4,
            num_extra_tokens=2,
        )
    elif size != "large":
        raise ValueError(f"unknown size {size!r}")
    return conf


def write_random_model(out_dir: Path, size: str, seed: int = 0) -> Path:
    """Build the model through FunASR's registry (so the state dict has
    exactly the keys AutoModel expects), randomise it, and save it."""
    from funasr.models.emotion2vec.model import Emotion2vec

    conf = model_conf(size)
    torch.manual_seed(seed)
    model = Emotion2vec(model_conf=conf, vocab_size=len(TOKENS))
    with torch.no_grad():
        # Random init leaves the head's logits nearly flat; widen them so
        # that tests see distinct, confident-looking (but meaningless) labels.
        model.proj.weight.mul_(8.0)
        for name, param in model.named_parameters():
            if "alibi_scale" in name:
                param.fill_(1.0)

    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model": "Emotion2vec",
        "model_conf": conf,
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
    }
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    (out_dir / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    torch.save(model.state_dict(), out_dir / "model.pt")
    params = sum(p.numel() for p in model.parameters())
    (out_dir / "emoq_random_model.json").write_text(
        json.dumps({"random_weights": True, "size": size, "seed": seed, "parameters": params}, indent=2)
    )
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "large"), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    out = write_random_model(args.out_dir, args.size, args.seed)
    info = json.loads((out / "emoq_random_model.json").read_text())
    print(f"wrote random-weight {args.size} emotion2vec model ({info['parameters']:,} parameters) to {out}")


if __name__ == "__main__":
    main()
