"""Captions for text-conditioned training: an emoji's name and short names, with light variations.

"grinning face with big eyes" gives "grinning face with big eyes", "an emoji of grinning face with big
eyes", "grinning face with big eyes emoji" and the short name "smiley". All captions are encoded once
with the MiniLM encoder into one table; a training row picks one of its emoji's captions at random.
"""
from __future__ import annotations

import torch

from ..generators.base import TextCondition

TEMPLATES = ("{}", "an emoji of {}", "{} emoji")


def emoji_captions(record: dict) -> list[str]:
    """The captions of one emoji record, lower case; the first is its plain name (used for evaluation)."""
    name = record["name"].lower()
    shorts = [s.replace("_", " ").replace("-", " ").lower() for s in record.get("short_names", [])]
    captions = [t.format(name) for t in TEMPLATES] + [s for s in shorts if s != name]
    return list(dict.fromkeys(captions))


class CaptionTable:
    """Every record's captions encoded once: `condition(rows, generator)` draws one per row."""

    def __init__(self, records: list[dict], encoder):
        per_record = [emoji_captions(r) for r in records]
        unique = list(dict.fromkeys(c for caps in per_record for c in caps))
        index = {c: i for i, c in enumerate(unique)}
        cond = encoder.encode(unique)
        self.states, self.mask = cond.states.half(), cond.mask             # float16: the table stays small
        self.ids = [[index[c] for c in caps] for caps in per_record]
        self.count = torch.tensor([len(i) for i in self.ids])
        width = int(self.count.max())
        self.table = torch.tensor([i + [i[0]] * (width - len(i)) for i in self.ids])   # (records, width)

    def condition(self, rows: torch.Tensor, generator: torch.Generator | None = None) -> TextCondition:
        """One caption per record in `rows`: random ones with a generator, else each record's plain name."""
        pick = torch.zeros(len(rows), dtype=torch.long)
        if generator is not None:
            pick = (torch.rand(len(rows), generator=generator) * self.count[rows]).long()
        caption = self.table[rows, pick]
        return TextCondition(self.states[caption], self.mask[caption], torch.zeros(len(rows), dtype=torch.bool))
