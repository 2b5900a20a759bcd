"""Image classification by transfer learning (Géron ch. 14): a pooled softmax head on any backbone."""
