"""What a person looks at: image grids, training GIFs, curves (and later the HTML report)."""
from ganforge.render.images import (  # noqa: F401
    grid_to_uint8,
    make_grid,
    save_grid,
    save_image,
    write_gif,
)
