"""The detector family: a YOLOv3-style single-shot detector on the backbone's 1/8, 1/16 and 1/32 maps."""
