"""Training aids around the losses: penalties (R1, gradient penalty), differentiable
augmentation, EMA, and CycleGAN's history pool of generated images
(:mod:`ganforge.regularize.image_pool`). One idea per module; import them directly."""
