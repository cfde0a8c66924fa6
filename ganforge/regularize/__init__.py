"""Training aids around the losses: penalties (R1, gradient penalty, instance noise:
:mod:`ganforge.regularize.penalties`), differentiable augmentation, the generator's weight
average (:mod:`ganforge.regularize.ema`), and CycleGAN's history pool of generated images
(:mod:`ganforge.regularize.image_pool`). One idea per module; import them directly."""
