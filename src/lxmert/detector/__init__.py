"""Bottom-up-attention region features from pixels (LXMERT-SPEC §4).

A plain-torch port of the Visual Genome Faster R-CNN (ResNet-101 C4, 1600 objects,
400 attributes) that produced LXMERT's features, loading the converted-Caffe weights of
the Hugging Face demo, plus the release's rule for choosing 36 boxes per image.

    from lxmert.detector import FeatureExtractor
    ex = FeatureExtractor.from_weights("pytorch_model.bin")
    record = next(ex.extract([("img1", "img1.jpg")]))   # dict in the TSV schema
"""

from lxmert.detector.config import DetectorConfig
from lxmert.detector.extract import FeatureExtractor, select_boxes
from lxmert.detector.model import DetectorOutput, FasterRCNN
from lxmert.detector.preprocess import PreparedImage, load_image, to_model_input
from lxmert.detector.weights import (
    convert_frcnn_state_dict,
    export_frcnn_state_dict,
    load_frcnn_checkpoint,
    load_state_dict_strict,
    load_vocab,
    random_init_,
)

__all__ = [
    "DetectorConfig",
    "DetectorOutput",
    "FasterRCNN",
    "FeatureExtractor",
    "PreparedImage",
    "convert_frcnn_state_dict",
    "export_frcnn_state_dict",
    "load_frcnn_checkpoint",
    "load_image",
    "load_state_dict_strict",
    "load_vocab",
    "random_init_",
    "select_boxes",
    "to_model_input",
]
