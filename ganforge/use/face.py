"""A trained run, ready to use: the one face of every task, :class:`Generator`.

``ganforge.load(RUN)`` returns the face of the task that trained the run (a subclass
registered under the task's name in :data:`FACES`; :func:`ganforge.use.faces.face_for`), and every use of
a run goes through it: ``ganforge sample``, ``interpolate``, ``progress``, ``translate``,
``eval``, ``export``, ``report``, ``serve``, the Python API, and scoring while training (the
trainer builds the face over its live modules). This module declares every request a face
answers and validates the arguments once, here; a task's face implements the requests that
apply to it (noise runs: :meth:`~Generator.noise`, :meth:`~Generator.decode`,
:meth:`~Generator.labels_for`; image-to-image runs: ``_translate``), and the base answers the
others with a one-line :class:`~ganforge.core.errors.UserError` naming the command that fits.

Nothing here names a task or a module (``G``, ``G_AB``, ...): a face declares its
``generators``, and ``inputs`` says how they are fed (``"noise"`` or ``"image"``). Images are
float32 NCHW tensors in [-1, 1] on the CPU.

Built from a checkpoint (:meth:`Generator.from_checkpoint`: each generator rebuilt from the
spec stored beside its weights, DESIGN lesson 5), from an export folder
(:meth:`Generator.from_export`: JSON and safetensors only) or over a training run's live
modules (``Task.trained``).

Name map to ganforge 0.1: ``Generator`` merges ``ganforge.api.Generator`` (the documented
wrapper) and ``ganforge.tasks.TrainedModel`` (the per-task class under it), which is kept as
an alias; ``GeneratorInfo`` merges ``GeneratorInfo`` and ``RunInfo``. ``translate`` returns the
translated images (as the API did); :meth:`~Generator.round_trip` also returns the
reconstructions (what ``TrainedModel.translate(..., reconstruct=True)`` did).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import (
    Any,
    ClassVar,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
import torch.nn as nn

from ganforge import models
from ganforge.core import runfolder
from ganforge.core.checkpoint import CheckpointError
from ganforge.core.config import DEFAULT_TASK
from ganforge.core.devices import resolve_device
from ganforge.core.errors import UserError
from ganforge.core.registry import Registry
from ganforge.metrics.scoring import parse_metrics
from ganforge.models.latent import (
    MODES,
    check_truncation,
    interpolate_noise,
    loop_positions,
)
from ganforge.use.inputs import ImageInput, images_to_tensor

#: task name -> its face (a :class:`Generator` subclass; ganforge/use/faces/ registers them)
FACES = Registry("task")


@dataclass(frozen=True)
class GeneratorInfo:
    """What a loaded run is.

    ``task``: the task that trained it (gan, conditional, cyclegan, ...); ``model``: its
    generator family (``dcgan``, ``cyclegan-resnet``, ...); ``img_size`` (px, square) and
    ``channels`` (1 or 3) of its images; ``classes``: the class names it can be asked for (None
    without classes); ``step``: generator steps trained; ``inputs``: ``"noise"``
    (:meth:`Generator.sample`) or ``"image"`` (:meth:`Generator.translate`); ``metrics``: the
    last evaluation of the run (``{"fid": 31.2, "step": 4000}``; empty when none was logged);
    ``source``: the checkpoint file or export folder; ``modules``: the weights used for each
    generator (``{"G": "G_ema"}``); ``config``: the run's resolved config as a dict;
    ``trained_on``: what its last training session actually ran on, ``{"device": "cpu",
    "precision": "bfloat16", "processes": 1}`` (empty for a checkpoint written before
    ganforge recorded it, and for an export)."""
    task: str
    model: str
    img_size: int
    channels: int
    classes: Optional[List[str]]
    step: int
    inputs: str
    metrics: Dict[str, float] = field(default_factory=dict)
    source: str = ""
    modules: Dict[str, str] = field(default_factory=dict)
    config: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    trained_on: Dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def data(self) -> str:
        """The dataset spec the run trained on (``data.name``)."""
        return str((self.config.get("data") or {}).get("name", ""))

    @property
    def data_dir(self) -> Optional[str]:
        """Where the run's named datasets were looked up (``data.data_dir``), or None."""
        return (self.config.get("data") or {}).get("data_dir") or None


#: ganforge 0.1's name of the same record
RunInfo = GeneratorInfo


@dataclass(frozen=True)
class EvalRequest:
    """What :meth:`Generator.evaluate` asks a face's ``_evaluate`` for, checked: ``metrics``
    (keys of :data:`ganforge.metrics.METRICS`), ``n`` generated images (and real ones at most),
    the feature ``extractor`` (``domain``/``inception``) and its ``weights`` file (None: the
    stored one), the real ``split``, the ``seed`` of the generated images, the ``device``, where
    named datasets live (``data_dir``; None: the run's), and whether to show ``progress``."""
    metrics: Tuple[str, ...]
    n: int = 10000
    extractor: str = "domain"
    weights: Optional[str] = None
    split: str = "test"
    seed: int = 0
    device: str = "cpu"
    data_dir: Optional[str] = None
    progress: bool = True


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block, its previous mode restored after."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)


def _count(n: Any, what: str = "n", thing: str = "image") -> int:
    """``n`` as an int >= 1, or a UserError naming ``what`` (``thing``: what is counted)."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n != int(n) or int(n) < 1:
        raise UserError(f"{what}={n!r}: ask for at least one {thing} (a whole number)")
    return int(n)


class Generator:
    """A trained run's generators, ready to use: the face of one task.

    >>> g = ganforge.load("runs/dcgan-fashion-mnist")      # doctest: +SKIP
    >>> x = g.sample(16, seed=1)                            # (16, 1, 28, 28) in [-1, 1]

    Subclasses (one per task, :mod:`ganforge.use.faces`) set ``generators`` (the module names
    the task produces), ``inputs``, ``usage`` (how such a run is used, for the errors of
    requests that do not apply) and implement the requests that apply. Every public request
    validates its arguments here and raises :class:`UserError` (one line) for a bad one or for
    a request that does not fit the run.
    """

    #: ``"noise"`` (sample, interpolate) or ``"image"`` (translate)
    inputs: ClassVar[str] = "noise"
    #: the generator modules of this task (each rebuilt from its stored spec)
    generators: ClassVar[Tuple[str, ...]] = ()
    #: how this kind of run is used, for the errors of requests that do not apply
    usage: ClassVar[str] = ""
    #: the translation directions (image-to-image runs), e.g. ``("a2b", "b2a")``
    directions: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, modules: Dict[str, nn.Module], info: GeneratorInfo,
                 task_state: Optional[Dict[str, Any]] = None):
        self.modules = modules
        self.info = info
        self.task_state = task_state or {}

    def __repr__(self) -> str:
        i = self.info
        cls = f", {len(i.classes)} classes" if i.classes else ""
        return (f"Generator({i.task}/{i.model}, {i.channels}x{i.img_size}x{i.img_size}{cls}, "
                f"step {i.step}, {self.device})")

    # ------------------------------------------------------------------ building
    @classmethod
    def classes_of(cls, data_classes: Optional[Sequence[str]], nets: Mapping[str, nn.Module]
                   ) -> Optional[List[str]]:
        """The class names this face can be asked for, from the run's data class names; None
        for a face without classes (the base)."""
        return None

    @classmethod
    def make_info(cls, nets: Mapping[str, nn.Module], *, task: str, step: int, img_size: int,
                  channels: int, data_classes: Optional[Sequence[str]], config: Dict[str, Any],
                  used: Dict[str, str], source: str = "",
                  metrics: Optional[Dict[str, float]] = None) -> GeneratorInfo:
        """The :class:`GeneratorInfo` of this face over ``nets`` (see its fields); ``metrics``
        None: the last evaluation in the run folder of ``source``."""
        first = nets[cls.generators[0]] if cls.generators and cls.generators[0] in nets else None
        spec = getattr(first, "spec", None) or {}
        model = str(spec.get("name") or (config.get("model") or {}).get("name", ""))
        if metrics is None:
            metrics = runfolder.last_eval_row(runfolder.run_dir_of(source)) if source else {}
        return GeneratorInfo(task=task, model=model, img_size=int(img_size), channels=int(channels),
                             classes=cls.classes_of(data_classes, nets), step=int(step),
                             inputs=cls.inputs, metrics=dict(metrics), source=str(source),
                             modules=dict(used), config=dict(config))

    @classmethod
    def _networks(cls, specs: Mapping[str, Dict[str, Any]], states: Mapping[str, Dict[str, Any]],
                  device: str | torch.device, missing: Any) -> Dict[str, nn.Module]:
        """Each of :attr:`generators` rebuilt from its spec (family + constructor kwargs) with
        its state dict, on ``device``, in eval mode; ``missing(name)``: the error to raise for
        a generator without a spec or weights."""
        nets = {}
        for name in cls.generators:
            if name not in specs or name not in states:
                raise missing(name)
            net = models.from_spec(specs[name])
            net.load_state_dict(states[name])
            nets[name] = net.to(device).eval()
        return nets

    @classmethod
    def from_checkpoint(cls, st: Dict[str, Any], *, ema: bool = True,
                        device: str | torch.device = "cpu", source: str = "") -> "Generator":
        """This face over the generators of checkpoint state ``st`` (their averages
        ``<name>_ema`` when kept and ``ema``). Raises :class:`CheckpointError` when a generator
        is missing."""
        specs, states = st.get("specs", {}), st.get("modules", {})
        used = {n: (f"{n}_ema" if ema and f"{n}_ema" in states else n) for n in cls.generators}
        nets = cls._networks(specs, {n: states[u] for n, u in used.items() if u in states}, device,
                             lambda name: CheckpointError(
                                 f"'{source}' is not a {st.get('task')} run as its config says: it "
                                 f"holds no '{name}' network (it has {', '.join(specs) or 'none'})"))
        data, cfg = st.get("data", {}), st.get("config", {})
        info = cls.make_info(nets, task=task_of(st), step=int(st.get("step", 0)),
                             img_size=int(data.get("img_size", 0)), channels=int(data.get("channels", 0)),
                             data_classes=data.get("class_names"), config=cfg, used=used,
                             source=str(source))
        if isinstance(st.get("runtime"), dict):
            info = dataclasses.replace(info, trained_on=dict(st["runtime"]))
        return cls(nets, info, st.get("task_state", {}) or {})

    @classmethod
    def from_export(cls, config: Dict[str, Any], weights: Dict[str, Dict[str, torch.Tensor]], *,
                    device: str | torch.device = "cpu", source: str = "") -> "Generator":
        """This face from an export folder's ``config.json`` (``config``: each generator's
        ``spec`` and which weights it holds) and its weights (generator name -> state dict, from
        ``model.safetensors``; :mod:`ganforge.use.export`). No checkpoint, no code from the
        folder. Raises :class:`CheckpointError` when a generator is missing."""
        gens = config.get("generators", {}) or {}
        nets = cls._networks({n: g["spec"] for n, g in gens.items()}, weights, device,
                             lambda name: CheckpointError(
                                 f"'{source}' is not a complete {config.get('task')} export: it "
                                 f"holds no '{name}' network (it has {', '.join(gens) or 'none'})"))
        used = {n: str(gens[n].get("weights", n)) for n in cls.generators}
        metrics = {k: v for k, v in (config.get("metrics") or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        info = cls.make_info(nets, task=str(config.get("task") or DEFAULT_TASK),
                             step=int(config.get("step", 0)), img_size=int(config.get("img_size", 0)),
                             channels=int(config.get("channels", 0)),
                             data_classes=config.get("class_names"),
                             config=dict(config.get("config", {}) or {}), used=used,
                             source=str(source), metrics=metrics)
        return cls(nets, info, cls.import_state(config.get("task_state", {}) or {}))

    # ------------------------------------------------------------------ common
    @property
    def device(self) -> torch.device:
        """Where the generators live."""
        for m in self.modules.values():
            for p in m.parameters():
                return p.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> "Generator":
        """Move the generators to ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``,
        ``"auto"``); returns self. Outputs stay CPU tensors. Raises :class:`UserError` for a
        device this machine does not have."""
        device = resolve_device(device, "device")
        for m in self.modules.values():
            m.to(device)
        return self

    @property
    def class_names(self) -> Optional[List[str]]:
        """Names of the classes the generators can be asked for (None: no classes)."""
        return self.info.classes

    @property
    def model(self) -> "Generator":
        """This face itself (0.1's ``Generator.model`` was the per-task object under it)."""
        return self

    def _wrong(self, what: str) -> UserError:
        return UserError(f"{what}: '{self.info.source or self.info.task}' is a {self.info.task} "
                         f"run, {self.usage}")

    def require(self, inputs: str, what: str) -> None:
        """Raise this run's one-line refusal of request ``what`` (naming the command that fits
        it) unless the run is fed with ``inputs`` (``"noise"`` or ``"image"``)."""
        if self.inputs != inputs:
            raise self._wrong(what)

    # ------------------------------------------------------------------ noise runs
    def sample(self, n: int, seed: int = 0, classes: Any = None, truncation: Optional[float] = None,
               *, batch_size: int = 256) -> torch.Tensor:
        """``n`` images: float32 (n, C, H, W) in [-1, 1] on CPU, from noise drawn with ``seed``
        (the same seed gives the same images, on any device, as ``ganforge sample --seed``).

        ``classes`` (runs with classes): one class for all n (an index or a name such as
        ``"sneaker"``, in any case, ``-``/``_``/space alike) or a sequence of n; None draws
        them as the run's training labels were. The same seed and class give the same images
        however the class is named. ``truncation``: psi > 0 for the truncation trick (noise
        components resampled until ``|z| <= psi``: less variety, cleaner images), None: none.

        Raises :class:`UserError` for n < 1, classes on a run without classes, an unknown class,
        a bad truncation, or an image-to-image run (use :meth:`translate`)."""
        self.require("noise", "sample")
        n = _count(n)
        psi = check_truncation(truncation)
        labels = self.labels_for(n, int(seed), classes)
        return self.decode(self.noise(n, int(seed), psi, batch_size), labels, batch_size)

    def noise(self, n: int, seed: int = 0, truncation: Optional[float] = None,
              batch_size: int = 256) -> torch.Tensor:
        """The float32 (n, z_dim) CPU noise :meth:`sample` feeds the generator for ``seed``."""
        raise self._wrong("noise")

    def decode(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None,
               batch_size: int = 256) -> torch.Tensor:
        """Images (float32 (n, C, H, W) in [-1, 1], CPU) for noise ``z`` (n, z_dim) and, for a
        run with classes, ``labels`` (n,) int64."""
        raise self._wrong("decode")

    def labels_for(self, n: int, seed: int = 0, classes: Any = None) -> Optional[torch.Tensor]:
        """The (n,) int64 labels :meth:`sample` uses for ``classes`` and ``seed`` (a run with
        classes: one class for all n, a sequence of n, ``"all"`` for every class in turn,
        ceil(n / K) images each, or None to draw them as training did);
        None for a run without classes, which refuses any ``classes`` but None. Raises
        :class:`UserError` for n < 1, an unknown class or a class on a run without classes."""
        n = _count(n)
        if not self.class_names:
            if classes is not None:
                raise UserError(f"classes={classes!r}: '{self.info.source or self.info.task}' "
                                f"holds an unconditional generator (a {self.info.task} run), "
                                f"which has no classes; train one with --task conditional")
            return None
        return self._labels(n, int(seed), classes)

    def _labels(self, n: int, seed: int, classes: Any) -> torch.Tensor:
        raise self._wrong("classes")

    def interpolate(self, seeds: Union[int, Sequence[int]], frames: int = 60, mode: str = "slerp",
                    classes: Any = None, truncation: Optional[float] = None) -> torch.Tensor:
        """A walk through noise: float32 (F, C, H, W) in [-1, 1], ``F >= frames`` (each of the
        k segments gets ceil(frames / k) frames, so F = frames when k divides it).

        With several ``seeds``: a closed loop through their noise vectors (``seeds[0]`` ->
        ``seeds[1]`` -> ... -> ``seeds[0]``), ``mode`` ``"slerp"`` (spherical, the default: the
        noise norm stays between the endpoints') or ``"lerp"``; frame 0 is exactly
        ``sample(1, seed=seeds[0], classes=..., truncation=...)``.
        Runs with classes: ``classes`` None (the class ``seeds[0]`` draws), one class (all
        frames), or several (with one seed): a walk through those classes at fixed noise, each
        class held for ceil(frames / k) frames (labels are discrete, so classes change in
        steps). ``truncation`` as in :meth:`sample`.

        Raises :class:`UserError` for no seeds, frames < 1, another mode, several seeds *and*
        several classes, classes on a run without classes, or an image-to-image run."""
        self.require("noise", "interpolate")
        seeds = [int(s) for s in (seeds if isinstance(seeds, Sequence) else [seeds])]
        if not seeds:
            raise UserError("seeds: give at least one seed")
        frames = _count(frames, "frames", "frame")
        if mode not in MODES:
            raise UserError(f"mode={mode!r}: use one of {', '.join(MODES)}")
        psi = check_truncation(truncation)
        walk: Optional[List[Any]] = None
        if classes is not None:
            if not self.class_names:
                self.labels_for(1, 0, classes)          # the run's own one-line refusal
            if isinstance(classes, torch.Tensor):
                classes = classes.tolist()
            if isinstance(classes, Sequence) and not isinstance(classes, str):
                walk = list(classes)
                if not walk:
                    raise UserError("classes: give at least one class")
                if len(walk) == 1:
                    classes, walk = walk[0], None
                elif len(seeds) > 1:
                    raise UserError(f"seeds={seeds} and classes={walk}: walk through several seeds "
                                    f"or several classes, not both (one seed for a class walk)")
        zs = torch.cat([self.noise(1, seed=s, truncation=psi) for s in seeds])
        if walk is not None:
            labels = self.labels_for(len(walk), 0, walk)
            pos = loop_positions(len(walk), frames)
            z = zs[:1].repeat(len(pos), 1)
            y = torch.stack([labels[s] for s, _ in pos])
            return self.decode(z, y)
        z = interpolate_noise(zs, frames, mode)
        y = self.labels_for(z.shape[0], seeds[0], classes)
        return self.decode(z, None if y is None else y[:1].repeat(z.shape[0]))

    def eval_batches(self, n: int, seed: int = 0, batch_size: int = 250) -> Iterator[torch.Tensor]:
        """``n`` generated images in batches, as FID & co. score them (classes balanced)."""
        raise self._wrong("scoring generated images")

    # ------------------------------------------------------------------ image runs
    def prepare_images(self, images: ImageInput) -> torch.Tensor:
        """``images`` as this run takes them: float32 (N, C, H, W) in [-1, 1] at its size and
        channel count (see :func:`ganforge.use.inputs.images_to_tensor`)."""
        return images_to_tensor(images, self.info.img_size, self.info.channels)

    def check_direction(self, direction: str) -> str:
        """``direction`` when this run translates that way (one of :attr:`directions`), before
        any image is read. Raises :class:`UserError`: for a noise run (use :meth:`sample`), or
        naming the directions there are."""
        self.require("image", "translate")
        if direction not in self.directions:
            raise UserError(f"--direction '{direction}': use {' or '.join(self.directions)}")
        return direction

    def translate(self, images: ImageInput, direction: str = "a2b", *,
                  batch_size: int = 64) -> torch.Tensor:
        """Translated images: float32 (N, C, H, W) in [-1, 1] on CPU, N = the inputs' count.

        ``images``: a float tensor in [-1, 1] (N, C, H, W) or (C, H, W) at the run's size and
        channel count (a uint8 tensor is read as 0..255), a PIL image, a path, or a list of
        PIL images / paths (any mode and size: resized, centre-cropped and converted to the
        run's channels as training data was). ``direction``: one of :attr:`directions`
        (``"a2b"`` or ``"b2a"``).

        Raises :class:`UserError` for a noise run (use :meth:`sample`), a wrong tensor shape,
        an unreadable file (naming it) or another direction."""
        return self.round_trip(images, direction, batch_size=batch_size, reconstruct=False)[0]

    def round_trip(self, images: ImageInput, direction: str = "a2b", *, batch_size: int = 64,
                   reconstruct: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(translated, reconstructed): :meth:`translate`, and each translation translated
        back (CycleGAN's ``F(G(x))``; None with ``reconstruct=False``). Same arguments and
        errors as :meth:`translate`."""
        direction = self.check_direction(direction)
        x = self.prepare_images(images)
        batch_size = _count(batch_size, "batch_size", "image per batch")
        return self._translate(x, direction, batch_size, reconstruct)

    def _translate(self, x: torch.Tensor, direction: str, batch_size: int, reconstruct: bool
                   ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        raise self._wrong("translate")

    def source_images(self, direction: str, split: str = "test", *, limit: int = 0,
                      data_dir: Optional[str] = None) -> Tuple[torch.Tensor, str]:
        """uint8 (N, C, H, W) images of the run's own source domain of ``direction`` at the
        run's size (``split="test"`` falls back to the training images when the domain has no
        test split; at most ``limit`` when > 0), and the name of what was loaded: what
        ``ganforge translate RUN run:test`` and the report translate. Raises
        :class:`UserError` for a noise run or another direction."""
        raise self._wrong("source images")

    # ------------------------------------------------------------------ scores
    def evaluate(self, metrics: Any = None, n: int = 10000, *, extractor: str = "domain",
                 weights: Optional[str] = None, split: str = "test", seed: int = 0,
                 device: str = "cpu", data_dir: Optional[str] = None,
                 progress: bool = True) -> Dict[str, Any]:
        """Scores of this run (``ganforge eval RUN``), a flat dict: ``task``, then what the
        task reports: noise runs FID, KID, precision/recall, density/coverage and the
        high-frequency ratio of ``n`` samples against the real ``split`` of the data the run
        trained on (runs with classes add class accuracy and intra-class FID), image-to-image
        runs translation scores. ``metrics``: a comma list or names of
        :data:`ganforge.metrics.METRICS` (None: the default list); ``extractor``: ``domain``
        (the evaluator trained on the dataset; ``weights`` names another file) or
        ``inception``. Raises :class:`UserError` for an unknown metric, n below what the
        metrics need (naming them), or a run whose data cannot be found."""
        names = parse_metrics(metrics)
        req = EvalRequest(metrics=names, n=_count(n), extractor=extractor, weights=weights,
                          split=split, seed=int(seed), device=str(device), data_dir=data_dir,
                          progress=progress)
        return {"task": self.info.task, **self._evaluate(req)}

    def _evaluate(self, req: EvalRequest) -> Dict[str, Any]:
        raise self._wrong("eval")

    # ------------------------------------------------------------------ export hooks
    def export_state(self) -> Dict[str, Any]:
        """The entries of ``task_state`` this face needs, as plain JSON values (lists,
        numbers); :meth:`import_state` turns them back, bit for bit. The base needs none."""
        return {}

    @classmethod
    def import_state(cls, state: Dict[str, Any]) -> Dict[str, Any]:
        """The inverse of :meth:`export_state`: plain values of ``config.json`` -> task_state."""
        return {}

    def example_inputs(self, name: str, n: int = 2, seed: int = 0
                       ) -> Tuple[Tuple[torch.Tensor, ...], Tuple[str, ...]]:
        """Fixed example inputs of generator ``name`` (what its ``forward`` takes, on CPU) and
        their names: what an ONNX export traces and checks against."""
        raise self._wrong("example inputs")

    def preview(self, fixed: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """One (C, H, W) grid in [-1, 1] that shows what the model does (a model card's
        picture); ``fixed``: the run's stored progress-grid inputs, when a face needs them."""
        raise self._wrong("preview")


#: ganforge 0.1's name of the per-task face
TrainedModel = Generator


def task_of(st: Mapping[str, Any]) -> str:
    """The task that wrote checkpoint state ``st`` (its ``task``, else its config's)."""
    return str(st.get("task") or (st.get("config") or {}).get("train", {}).get("task") or DEFAULT_TASK)


__all__ = ["FACES", "Generator", "GeneratorInfo", "EvalRequest", "RunInfo", "TrainedModel",
           "eval_mode", "task_of"]
