"""AdaCon: adaptive-margin contrastive regression (Dai et al., IEEE TMI 2021)."""
