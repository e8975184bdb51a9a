"""Video backbones shared by the EF regressors (MCSDR, AdaCon)."""
