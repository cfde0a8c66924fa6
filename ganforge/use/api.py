"""The Python API in one import, for code that uses trained runs::

    from ganforge.use.api import load, Generator, write_animation

    g = load("runs/dcgan-fashion-mnist")          # the run's task face (a Generator)
    write_animation(list(g.interpolate([1, 7, 42], frames=30)), "walk.gif")

``ganforge.load`` is the same :func:`~ganforge.use.load.load`; ``ganforge.api`` (0.1's module)
imports this one.
"""
from ganforge.use.animate import interpolate_to_file, progress_to_file, write_animation
from ganforge.use.face import EvalRequest, Generator, GeneratorInfo, TrainedModel
from ganforge.use.inputs import ImageInput
from ganforge.use.load import load, load_run

__all__ = ["load", "load_run", "Generator", "GeneratorInfo", "EvalRequest", "TrainedModel",
           "ImageInput", "write_animation", "interpolate_to_file", "progress_to_file"]
