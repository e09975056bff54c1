"""Datasets: the emoji art the embedded models are trained on."""
from .emoji import STYLES, EmojiData, build_emoji, data_dir, load_emoji, model_styles

__all__ = ["STYLES", "EmojiData", "build_emoji", "data_dir", "load_emoji", "model_styles"]
