"""The localizer family: one object per image, its class and its box (Géron ch. 14)."""
