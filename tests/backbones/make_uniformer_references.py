"""Writes tests/backbones/data/uniformer_s.npz: the published UniFormer-S's pooled feature
on a seeded grey clip with seeded weights, computed by PyTorch (needs torch; not run in CI).

  /tmp/torchenv/bin/python tests/backbones/make_uniformer_references.py [--original PATH]

The network below is a transcription of CoReEcho's `coreecho/uniformer.py`
(BioMedIA-MBZUAI/CoReEcho, commit 369fbe98; the same code as Sense-X/UniFormer
`video_classification/slowfast/models/uniformer.py`) reduced to what UniFormer-S uses
(CBlock stages 1-2, SABlock stages 3-4, std=False, split=False, no representation
layer), with the same module and key names so a strict `load_state_dict` works. Dropout
and drop path are left out: the model runs in eval mode, where both are identity.
`--original PATH` (a local copy of that file; `timm` stubbed if absent) loads the same
weights into the original and asserts both give the same output to 1e-6.

The weights come from `import_reference.random_state_dict` (key names and shapes from
this model, seed WEIGHT_SEED) and the clip from `grey_clip`; the npz keeps the names,
shapes, seeds, normalisation and PyTorch's output, never the weights or the clip.
"""
from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import types

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from launch import import_weights  # noqa: E402  pylint: disable=g-import-not-at-top
from tests.backbones import import_reference  # noqa: E402  pylint: disable=g-import-not-at-top

torch = import_weights.optional_torch(purpose="making the UniFormer references")
nn = torch.nn

WEIGHT_SEED = 15
CLIP_SEED = 16
CLIP_SHAPE = (2, 8, 64, 64)   # B, T, H, W (grey)
#: CoReEcho coreecho/dataset.py DEFAULT_MEAN / DEFAULT_STD, 0..255 units.
PIXEL_MEAN = tuple(255.0 * m for m in (0.12741163, 0.1279413, 0.12912785))
PIXEL_STD = tuple(255.0 * s for s in (0.19557191, 0.19562256, 0.1965878))


class Mlp(nn.Module):
  def __init__(self, dim, hidden):
    super().__init__()
    self.fc1 = nn.Linear(dim, hidden)
    self.act = nn.GELU()
    self.fc2 = nn.Linear(hidden, dim)

  def forward(self, x):
    return self.fc2(self.act(self.fc1(x)))


class CMlp(nn.Module):
  def __init__(self, dim, hidden):
    super().__init__()
    self.fc1 = nn.Conv3d(dim, hidden, 1)
    self.act = nn.GELU()
    self.fc2 = nn.Conv3d(hidden, dim, 1)

  def forward(self, x):
    return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
  def __init__(self, dim, num_heads):
    super().__init__()
    self.num_heads = num_heads
    self.scale = (dim // num_heads) ** -0.5
    self.qkv = nn.Linear(dim, dim * 3, bias=True)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x):
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class CBlock(nn.Module):
  def __init__(self, dim, mlp_ratio=4.0):
    super().__init__()
    self.pos_embed = nn.Conv3d(dim, dim, 3, 1, 1, groups=dim)
    self.norm1 = nn.BatchNorm3d(dim)
    self.conv1 = nn.Conv3d(dim, dim, 1)
    self.conv2 = nn.Conv3d(dim, dim, 1)
    self.attn = nn.Conv3d(dim, dim, 5, 1, 2, groups=dim)
    self.norm2 = nn.BatchNorm3d(dim)
    self.mlp = CMlp(dim, int(dim * mlp_ratio))

  def forward(self, x):
    x = x + self.pos_embed(x)
    x = x + self.conv2(self.attn(self.conv1(self.norm1(x))))
    return x + self.mlp(self.norm2(x))


class SABlock(nn.Module):
  def __init__(self, dim, num_heads, mlp_ratio=4.0):
    super().__init__()
    self.pos_embed = nn.Conv3d(dim, dim, 3, 1, 1, groups=dim)
    self.norm1 = nn.LayerNorm(dim, eps=1e-6)
    self.attn = Attention(dim, num_heads)
    self.norm2 = nn.LayerNorm(dim, eps=1e-6)
    self.mlp = Mlp(dim, int(dim * mlp_ratio))

  def forward(self, x):
    x = x + self.pos_embed(x)
    b, c, t, h, w = x.shape
    x = x.flatten(2).transpose(1, 2)
    x = x + self.attn(self.norm1(x))
    x = x + self.mlp(self.norm2(x))
    return x.transpose(1, 2).reshape(b, c, t, h, w)


class PatchEmbed(nn.Module):
  """SpeicalPatchEmbed (kernel (3,4,4), stride (2,4,4), padding (1,0,0)) or PatchEmbed
  (kernel = stride (1,2,2)); LayerNorm with PyTorch's default eps 1e-5."""

  def __init__(self, in_chans, dim, kernel, stride, padding):
    super().__init__()
    self.norm = nn.LayerNorm(dim)
    self.proj = nn.Conv3d(in_chans, dim, kernel, stride, padding)

  def forward(self, x):
    x = self.proj(x)
    b, c, t, h, w = x.shape
    x = self.norm(x.flatten(2).transpose(1, 2))
    return x.reshape(b, t, h, w, -1).permute(0, 4, 1, 2, 3).contiguous()


class Uniformer(nn.Module):
  """UniFormer-S: forward returns (logits, pooled 512-d feature), as CoReEcho's."""

  def __init__(self, depth=(3, 4, 8, 3), num_classes=400, in_chans=3,
               embed_dim=(64, 128, 320, 512), head_dim=64, mlp_ratio=4.0):
    super().__init__()
    self.patch_embed1 = PatchEmbed(in_chans, embed_dim[0], (3, 4, 4), (2, 4, 4), (1, 0, 0))
    self.patch_embed2 = PatchEmbed(embed_dim[0], embed_dim[1], (1, 2, 2), (1, 2, 2), 0)
    self.patch_embed3 = PatchEmbed(embed_dim[1], embed_dim[2], (1, 2, 2), (1, 2, 2), 0)
    self.patch_embed4 = PatchEmbed(embed_dim[2], embed_dim[3], (1, 2, 2), (1, 2, 2), 0)
    heads = [d // head_dim for d in embed_dim]
    self.blocks1 = nn.ModuleList([CBlock(embed_dim[0], mlp_ratio) for _ in range(depth[0])])
    self.blocks2 = nn.ModuleList([CBlock(embed_dim[1], mlp_ratio) for _ in range(depth[1])])
    self.blocks3 = nn.ModuleList([SABlock(embed_dim[2], heads[2], mlp_ratio) for _ in range(depth[2])])
    self.blocks4 = nn.ModuleList([SABlock(embed_dim[3], heads[3], mlp_ratio) for _ in range(depth[3])])
    self.norm = nn.BatchNorm3d(embed_dim[-1])
    self.head = nn.Linear(embed_dim[-1], num_classes)

  def forward(self, x):
    for i in range(1, 5):
      x = getattr(self, f"patch_embed{i}")(x)
      for blk in getattr(self, f"blocks{i}"):
        x = blk(x)
    x = self.norm(x).flatten(2).mean(-1)
    return self.head(x), x


def load_original(path: pathlib.Path):
  """The original module from a local file, with `timm.models.layers` stubbed if absent."""
  try:
    import timm.models.layers  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    layers = types.ModuleType("timm.models.layers")
    layers.trunc_normal_ = nn.init.trunc_normal_
    layers.to_2tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    class DropPath(nn.Module):
      def __init__(self, p):
        raise NotImplementedError(f"drop path {p} not stubbed")

    layers.DropPath = DropPath
    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    timm.models, models.layers = models, layers
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})
  spec = importlib.util.spec_from_file_location("original_uniformer", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--original", type=pathlib.Path, default=None,
                      help="local copy of coreecho/uniformer.py to check the transcription against")
  args = parser.parse_args()
  torch.manual_seed(0)
  model = Uniformer().eval()
  reference = model.state_dict()
  names = list(reference)
  shapes = [tuple(v.shape) for v in reference.values()]
  weights = import_reference.random_state_dict(names, shapes, WEIGHT_SEED)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
  n_params = sum(p.numel() for p in model.parameters())

  grey = import_reference.grey_clip(*CLIP_SHAPE, seed=CLIP_SEED)           # (B, T, H, W)
  rgb = np.repeat(grey[..., None], 3, axis=-1)
  rgb = (rgb - np.asarray(PIXEL_MEAN, np.float32)) / np.asarray(PIXEL_STD, np.float32)
  x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 4, 1, 2, 3), np.float32))
  with torch.no_grad():
    _, pooled = model(x)
  pooled = pooled.numpy()

  if args.original is not None:
    original = load_original(args.original).uniformer_small().eval()
    original.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    with torch.no_grad():
      _, pooled_original = original(x)
    err = import_reference.relative_error(pooled, pooled_original.numpy())
    print(f"transcription vs original: relative error {err:.3g}")
    assert err <= 1e-6, err

  path = import_reference.save(
      "uniformer_s",
      names=np.asarray(names),
      shapes=np.asarray([",".join(str(s) for s in shape) for shape in shapes]),
      weight_seed=np.int64(WEIGHT_SEED), clip_seed=np.int64(CLIP_SEED),
      clip_shape=np.asarray(CLIP_SHAPE, np.int64),
      pixel_mean=np.asarray(PIXEL_MEAN, np.float64), pixel_std=np.asarray(PIXEL_STD, np.float64),
      pooled=pooled.astype(np.float32), n_params=np.int64(n_params),
      torch_version=np.asarray(torch.__version__))
  print(f"{path}: {len(names)} keys, {n_params:,} parameters, pooled {pooled.shape}, "
        f"torch {torch.__version__}")


if __name__ == "__main__":
  main()
