"""AdaCon as a plug-in beside another regressor's head (Dai et al. 2021, §III-C).

A host model (MCSDR's, say) gives the plug-in its pooled encoder feature of each clip
and of a second view of that clip; the plug-in adds `weight` · L_con (AdaCon Eq. 6) to
the host's loss. The host never imports this package: the training layer
(`training.tasks`) builds the plug-in from the config and hands it over. What the
host uses:

  plugin.head                  Flax module: pooled feature (B, D) → z (B, features),
                               L2-normalised (`heads.ProjectionHead`);
  plugin.weight                the weight of L_con in the host's loss;
  plugin.name                  'adacon' (the host logs the loss as 'adacon_loss');
  plugin.second_view(rng, v)   a second augmented view of each clip (`views`);
  plugin.loss(z1, z2, ef)      Eq. 6 on [z1; z2] with labels ef (EF %, (B,)).

The ECDF φ of the margins is fitted on the host's training labels only (`fit`).
"""
from __future__ import annotations

import jax.numpy as jnp

from adacon_jax import ecdf as ecdf_lib
from adacon_jax import heads
from adacon_jax import losses
from adacon_jax import views


def enabled(adacon_cfg) -> bool:
  """Whether a host config's AdaCon block (config.model.adacon) turns the plug-in on."""
  return adacon_cfg.weight > 0


class AdaConPlugin:
  """See the module docstring; `cfg` is the host's config.model.adacon."""

  name = "adacon"

  def __init__(self, cfg, ecdf: ecdf_lib.ECDF):
    self.cfg = cfg
    self.weight = float(cfg.weight)
    self.ecdf = ecdf
    self.head = heads.ProjectionHead(cfg.proj_hidden, cfg.proj_features)

  @classmethod
  def fit(cls, cfg, train_labels) -> AdaConPlugin:
    """The plug-in with φ fitted on the host's training labels (EF %)."""
    return cls(cfg, ecdf_lib.ECDF.fit(train_labels, bucket_width=cfg.bucket_width,
                                      name="config.data training EF labels"))

  def second_view(self, rng, video):
    """Pad-crop and intensity jitter of each clip of (B, T, H, W, C) (`views`)."""
    c = self.cfg
    return views.random_views(rng, video, pad=c.pad, brightness=c.brightness,
                              contrast=c.contrast)

  def loss(self, z1, z2, ef):
    """AdaCon Eq. 6 on z = [z1; z2] (2B, D); positives share the label bucket."""
    y2 = jnp.concatenate([ef, ef])
    pos = losses.positive_mask(y2, self.cfg.bucket_width)
    return losses.adacon_loss(jnp.concatenate([z1, z2]), self.ecdf(y2), pos,
                              scale=self.cfg.scale)
