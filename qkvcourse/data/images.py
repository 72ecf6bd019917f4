"""A generated image-captioning task: coloured shapes, named left to right (chapter 4).

Each image is ``image_size`` × ``image_size`` RGB pixels, seen as a ``grid`` × ``grid``
array of cells. ``num_objects`` shapes, each in its own column (and a random row), are
drawn into their cells with a small random offset; the caption names them from left to
right, colour then shape::

    "green plus red disk blue cross"

So a captioner has to find the objects, tell colours and shapes apart, and put them in
order: at each word, the part of the image it needs is one cell. Everything is generated
from a seed: no download.

Shape legend: N images, C = 3 colour channels, P = image_size pixels, G = grid cells per side.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from .._validate import check_real, check_seed, check_size, check_sizes
from .vocab import Vocab

__all__ = ["COLOURS", "SHAPES", "ShapeCaptionData", "draw_shapes"]

COLOURS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.75, 0.1), "blue": (0.15, 0.25, 0.95),
           "yellow": (0.95, 0.85, 0.1)}

# 5 × 5 sprites; a 1 is painted in the object's colour.
_SPRITES = {
    "square": ["11111", "11111", "11111", "11111", "11111"],
    "disk":   ["01110", "11111", "11111", "11111", "01110"],
    "plus":   ["00100", "00100", "11111", "00100", "00100"],
    "cross":  ["10001", "01010", "00100", "01010", "10001"],
}
SHAPES = tuple(_SPRITES)
_SPRITE_SIZE = 5


def _sprite(name: str) -> Tensor:
    return torch.tensor([[float(c) for c in row] for row in _SPRITES[name]])  # (5, 5)


def draw_shapes(objects, image_size: int = 24, grid: int = 4, generator: torch.Generator | None = None,
                noise: float = 0.05) -> Tensor:
    """One image ``(3, P, P)`` with the given objects.

    Args:
        objects: ``(colour, shape, row, column)`` tuples; row and column index the grid cells.
        image_size: P, pixels per side (a multiple of ``grid``, with cells of >= 5 pixels).
        grid: G, cells per side.
        generator: draws each object's offset inside its cell and the background noise.
        noise: standard deviation of the Gaussian pixel noise added everywhere.
    """
    check_sizes(image_size=image_size, grid=grid)
    if image_size // grid < _SPRITE_SIZE:
        raise ValueError(f"image_size must give cells of at least {_SPRITE_SIZE} pixels "
                         f"(image_size // grid >= {_SPRITE_SIZE}), got image_size={image_size}, "
                         f"grid={grid}")
    check_real("noise", noise, minimum=0.0, what="a standard deviation")
    cell = image_size // grid
    image = torch.zeros(3, image_size, image_size)
    for colour, shape, row, col in objects:
        dy, dx = torch.randint(0, cell - _SPRITE_SIZE + 1, (2,), generator=generator).tolist()
        y, x = row * cell + dy, col * cell + dx
        mask = _sprite(shape)  # (5, 5)
        rgb = torch.tensor(COLOURS[colour])[:, None, None]  # (3, 1, 1)
        patch = image[:, y:y + _SPRITE_SIZE, x:x + _SPRITE_SIZE]
        image[:, y:y + _SPRITE_SIZE, x:x + _SPRITE_SIZE] = patch * (1 - mask) + rgb * mask
    image += noise * torch.randn(image.shape, generator=generator)
    return image.clamp(0.0, 1.0)


@dataclass
class CaptionSplit:
    """One split: images, captions and where each named object is."""
    images: Tensor          # (N, 3, P, P) float in [0, 1]
    captions: list          # N word lists, 2 words per object, left to right
    cells: Tensor           # (N, num_objects) long: grid cell (row * G + column) of each object, in caption order
    tgt_in: Tensor          # (N, T) <bos> + caption ids
    tgt_out: Tensor         # (N, T) caption ids + <eos>


class ShapeCaptionData:
    """Generated images of coloured shapes with left-to-right captions.

    Args:
        num_train, num_test: number of images per split.
        num_objects: shapes per image, each in a different column (at most ``grid``).
        image_size, grid: P pixels per side, G × G cells.
        seed: draws everything; the same seed gives the same images.
        batch_size: rows per training batch.

    Attributes:
        vocab: the words (colours and shapes) with ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``.
        train, test: :class:`CaptionSplit`.
        generator: orders the training batches (reseed it to repeat an order).

    Example:
        >>> data = ShapeCaptionData(num_train=8, num_test=4)
        >>> data.train.images.shape, len(data.train.captions[0])
        (torch.Size([8, 3, 24, 24]), 6)
    """

    def __init__(self, num_train: int = 4000, num_test: int = 500, num_objects: int = 3,
                 image_size: int = 24, grid: int = 4, seed: int = 0, batch_size: int = 64):
        check_sizes(num_objects=num_objects, image_size=image_size, grid=grid)
        check_seed("seed", seed)
        if not 1 <= num_objects <= grid:
            raise ValueError(f"num_objects must lie in [1, grid={grid}], got {num_objects}")
        if image_size % grid or image_size // grid < _SPRITE_SIZE:
            raise ValueError(f"image_size must be a multiple of grid={grid} with cells of at least "
                             f"{_SPRITE_SIZE} pixels, got {image_size}")
        check_size("num_train", num_train)  # the training loader shuffles: at least one image
        check_size("num_test", num_test, minimum=0)
        check_size("batch_size", batch_size)
        self.num_objects, self.image_size, self.grid = num_objects, image_size, grid
        self.seed, self.batch_size = seed, batch_size
        self.vocab = Vocab(list(COLOURS) + list(SHAPES))
        g = torch.Generator().manual_seed(seed)
        self.train = self._split(num_train, g)
        self.test = self._split(num_test, g)
        self.generator = torch.Generator().manual_seed(seed)

    def _split(self, n: int, g: torch.Generator) -> CaptionSplit:
        images, captions, cells = [], [], []
        colours, shapes = list(COLOURS), list(SHAPES)
        for _ in range(n):
            columns = sorted(torch.randperm(self.grid, generator=g)[:self.num_objects].tolist())
            objects = [(colours[torch.randint(len(colours), (1,), generator=g).item()],
                        shapes[torch.randint(len(shapes), (1,), generator=g).item()],
                        torch.randint(self.grid, (1,), generator=g).item(), col)
                       for col in columns]  # left to right
            images.append(draw_shapes(objects, self.image_size, self.grid, g))
            captions.append([w for colour, shape, _, _ in objects for w in (colour, shape)])
            cells.append([row * self.grid + col for _, _, row, col in objects])
        ids = torch.tensor([self.vocab.encode(c) for c in captions], dtype=torch.long).reshape(n, -1)
        bos = torch.full((n, 1), self.vocab.bos_id, dtype=torch.long)
        eos = torch.full((n, 1), self.vocab.eos_id, dtype=torch.long)
        return CaptionSplit(images=torch.stack(images) if images else torch.zeros(0, 3, self.image_size, self.image_size),
                            captions=captions, cells=torch.tensor(cells, dtype=torch.long).reshape(n, self.num_objects),
                            tgt_in=torch.cat([bos, ids], dim=1), tgt_out=torch.cat([ids, eos], dim=1))

    def train_dataloader(self) -> DataLoader:
        """Shuffled ``(images, tgt_in, tgt_out)`` batches, in an order set by :attr:`generator`."""
        s = self.train
        return DataLoader(TensorDataset(s.images, s.tgt_in, s.tgt_out), batch_size=self.batch_size,
                          shuffle=True, generator=self.generator)

    def decode(self, ids) -> list[list[str]]:
        """Word lists from ids ``(N, T)``, stopping at ``<eos>``."""
        return [self.vocab.decode(row) for row in ids]

    def __repr__(self) -> str:
        return (f"ShapeCaptionData(train={len(self.train.captions)}, test={len(self.test.captions)}, "
                f"objects={self.num_objects}, image={self.image_size}x{self.image_size}, "
                f"grid={self.grid}x{self.grid}, vocab={len(self.vocab)})")
