"""Datasets: the emoji art the embedded models are trained on."""
from .emoji import EmojiData, build_emoji, data_dir, load_emoji

__all__ = ["EmojiData", "build_emoji", "data_dir", "load_emoji"]
