"""Knowledge distillation of a trained generator into a smaller one (``ganforge distill``,
``distill.teacher``).

The student is an ordinary run of the teacher's task (gan, conditional, cyclegan): the same
module names, checkpoint layout and use-time face, so ``sample``, ``eval``, ``export``,
``serve`` and ``ganforge.load`` work on it unchanged. Only its generator loss changes:

    L_G = adversarial * L_adv  +  pixel * E|S(u) - T(u)|  +  feature * E||phi(S(u)) - phi(T(u))||^2

for every input ``u`` the task feeds a student generator with gradient (noise ``z``, noise and
labels ``(z, y)``, or images ``x`` for CycleGAN's two generators, with every role the task
uses: translation, reconstruction, identity). ``T`` is the teacher's generator (its EMA
average when it kept one and ``distill.ema``), frozen; ``phi`` is the teacher discriminator's
feature map (``D.features``: the layer before its logit), frozen; a discriminator without
``features`` (CycleGAN's PatchGAN) leaves the pixel term alone, with a note.

Sources: output (pixel) matching of a compressed generator to its teacher, Aguinaldo et al.
2019, "Compressing GANs using Knowledge Distillation" (their L1 "joint" loss) and Li et al.
2020, "GAN Compression" (CVPR, §3.1: reconstruction + distillation of intermediate features +
the original adversarial loss); the feature term here matches a fixed network's features of the
two outputs (a perceptual-style loss, as their distillation of features), in the teacher D's
space rather than VGG's, since no pretrained image network is available offline.

With ``distill.adversarial = 0`` (the default) the discriminator phases are dropped: nothing
but the two matching terms is trained, and no D is needed at all. With ``adversarial > 0`` the
task's D phases run as usual, each D starting from the teacher's weights when they fit (a
student D of another width starts fresh, said in the log).

Name map (Li et al. 2020 -> here): G' (student) -> the run's G; G (teacher) -> ``teacher``;
lambda_recon -> ``distill.pixel``; lambda_distill -> ``distill.feature``; L_cGAN ->
``distill.adversarial`` x the task's own G loss.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge import models
from ganforge.core import checkpoint as ckpt
from ganforge.core.config import ConfigError, DistillConfig
from ganforge.use.face import task_of


def _raw(m: nn.Module) -> nn.Module:
    return getattr(m, "module", m)


class Distiller:
    """The teacher, the hooks on the student's generators, and the distillation terms.

    Built by the trainer when ``cfg.distill.teacher`` is set; ``phases(p)`` filters the task's
    phases, ``g_loss(loss, logs)`` replaces a generator phase's loss. Raises ConfigError (a
    one-line message naming ``distill.teacher``) for a missing or foreign teacher.
    """

    def __init__(self, d: DistillConfig, task, device: torch.device):
        self.pixel, self.feature, self.adversarial = float(d.pixel), float(d.feature), float(d.adversarial)
        if self.pixel == 0 and self.feature == 0:
            raise ConfigError("distill.pixel and distill.feature are both 0: the student would learn "
                              "nothing from its teacher; set one of them > 0")
        try:
            st = ckpt.load_checkpoint(ckpt.find_checkpoint(d.teacher), map_location="cpu")
        except ckpt.CheckpointError as e:
            raise ConfigError(f"distill.teacher {d.teacher}: {e}") from None
        task_name = task_of(st)
        if task_name != task.name:
            raise ConfigError(f"distill.teacher {d.teacher} is a '{task_name}' run; the student must "
                              f"be trained with the same task (train.task={task_name})")
        specs, weights = st.get("specs", {}), st.get("modules", {})
        # the teacher's generators as every use of a run rebuilds them (its EMA when kept)
        try:
            trained = type(task).trained_class.from_checkpoint(st, ema=d.ema, device=device,
                                                               source=d.teacher)
        except ckpt.CheckpointError as e:
            raise ConfigError(f"distill.teacher {d.teacher}: {e}") from None
        self.teachers: Dict[str, nn.Module] = {n: m.requires_grad_(False)
                                               for n, m in trained.modules.items()}
        self.features: Dict[str, Optional[nn.Module]] = {}
        self.notes: List[str] = []
        # phi: the teacher D that judges a generator's outputs (CycleGAN: G_AB -> D_B).
        judge = getattr(task, "judges", None) or {g: task.discriminators[0] for g in task.generators}
        for g, dname in judge.items():
            dnet = self._frozen(specs[dname], weights[dname], device) if dname in specs else None
            ok = dnet is not None and callable(getattr(dnet, "features", None))
            self.features[g] = dnet if ok else None
            if self.feature and not ok:
                self.notes.append(f"{dname} has no features(x); {g} is distilled by the pixel "
                                  f"term only")
        self.conditional = any("n_classes" in specs[n]["kwargs"] for n in task.discriminators
                               if n in specs)
        if self.adversarial > 0:
            for dname in task.discriminators:
                mine = task.modules[dname]
                theirs = weights.get(dname, {})
                fits = theirs and all(k in theirs and theirs[k].shape == v.shape
                                      for k, v in mine.state_dict().items())
                if fits:
                    mine.load_state_dict(theirs)
                    self.notes.append(f"{dname} starts from the teacher's weights")
                else:
                    self.notes.append(f"{dname} starts fresh (its shape differs from the teacher's)")
        self.calls: Dict[str, List[Tuple[tuple, dict, torch.Tensor]]] = {g: [] for g in task.generators}
        self._hooks = [_raw(task.modules[g]).register_forward_hook(self._record(g), with_kwargs=True)
                       for g in task.generators]
        self.source = f"{d.teacher} (step {st.get('step')}, {', '.join(f'{n}' for n in self.teachers)})"

    @staticmethod
    def _frozen(spec: Dict[str, Any], state: Dict[str, torch.Tensor], device) -> nn.Module:
        net = models.from_spec(spec)
        net.load_state_dict(state)
        net.to(device).eval().requires_grad_(False)
        return net

    def _record(self, name: str):
        def hook(module, args, kwargs, output):
            if torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad:
                self.calls[name].append((args, kwargs, output))
        return hook

    def describe(self) -> str:
        parts = [f"distilling {self.source}: pixel L1 x {self.pixel:g}, features x {self.feature:g}, "
                 f"adversarial x {self.adversarial:g}"]
        return "; ".join(parts + self.notes)

    def phases(self, phases: list, discriminators) -> list:
        """The task's phases, without those that train only discriminators when the
        adversarial term is off."""
        if self.adversarial > 0:
            return phases
        keep = [p for p in phases if not set(p.modules) <= set(discriminators)]
        return keep

    def is_g_phase(self, phase) -> bool:
        return bool(set(phase.modules) & set(self.teachers))

    def g_loss(self, adv_loss: torch.Tensor, logs: Dict[str, torch.Tensor]
               ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The generator phase's loss: the distillation terms over every recorded call of a
        student generator since the last G phase, plus ``adversarial`` x the task's loss."""
        pix, feat, n = 0.0, 0.0, 0
        for g, calls in self.calls.items():
            teacher, phi = self.teachers[g], self.features[g]
            for args, kwargs, out in calls:
                with torch.no_grad():
                    target = teacher(*args, **kwargs).float()
                out = out.float()
                if self.pixel:
                    pix = pix + F.l1_loss(out, target)
                if self.feature and phi is not None:
                    # a conditional D's features take the label G was given: G(z, y)
                    y = (args[1] if len(args) > 1 else kwargs.get("y")) if self.conditional else None
                    extra = (y,) if y is not None else ()
                    with torch.no_grad():
                        ft = phi.features(target, *extra).float()
                    feat = feat + F.mse_loss(phi.features(out, *extra).float(), ft)
                n += 1
            calls.clear()
        if n == 0:
            raise RuntimeError("distillation: the generator phase called no student generator with "
                               "gradient; this task is not supported by distill")
        loss = (self.pixel * pix + self.feature * feat) / n
        out_logs = dict(logs)
        if self.pixel:
            out_logs["distill_l1"] = (pix / n).detach()
        if self.feature and isinstance(feat, torch.Tensor):
            out_logs["distill_feat"] = (feat / n).detach()
        if self.adversarial > 0:
            loss = loss + self.adversarial * adv_loss
        return loss, out_logs

    def clear(self) -> None:
        """Forget calls made outside a generator phase's graph (e.g. D phases)."""
        for calls in self.calls.values():
            calls.clear()
