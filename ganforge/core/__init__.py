"""The ground floor: what every other part of ganforge may import, and which imports nothing
of ganforge above it.

- ``version``: ``__version__`` (also ``ganforge.__version__``);
- ``errors``: the :class:`~ganforge.core.errors.GanforgeError` family (one-line user errors);
- ``files``: durable atomic writes, image extensions, writability probes;
- ``argtypes``: argparse number types for the CLI;
- ``registry``: :class:`~ganforge.core.registry.Registry`, the one way a name chooses a thing;
- ``config``: the typed, strict config and its schema (every key's range lives there);
- ``devices``, ``distributed``: device names, torchrun process groups;
- ``checkpoint``: the checkpoint file format (its one owner);
- ``runfolder``: the run folder's files and their formats (their one owner).
"""
