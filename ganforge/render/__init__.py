"""What a person looks at: image grids, training GIFs, curves (and later the HTML report)."""
from ganforge.render.images import make_grid, save_grid, save_image, grid_to_uint8, write_gif  # noqa: F401
