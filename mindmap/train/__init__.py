"""Training loops on `accelerate`; each writes a checkpoint folder with its model card."""
