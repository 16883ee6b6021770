"""AudioSet classifier heads over VGGish embeddings: data, models, training, evaluation, the shipped head."""

from classifier.head_file import HeadError
from classifier.pretrained import Head, load_head, load_pretrained

__all__ = ["Head", "HeadError", "load_head", "load_pretrained"]
