"""Partial-label multi-domain echo segmentation (U-Net, Attention U-Net, Swin-UNet; issue 6)."""
