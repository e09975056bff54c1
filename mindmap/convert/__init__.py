"""Published generators -> MINDmap checkpoint folders (`python -m mindmap convert FAMILY ...`)."""
from .base import ConvertError, read_state_dict
from .families import FAMILIES, Family, convert, get_family, imagenet_classes
from . import amused, llamagen, mar, var  # noqa: F401  (each registers its family)

__all__ = ["ConvertError", "FAMILIES", "Family", "convert", "get_family", "imagenet_classes", "read_state_dict"]
