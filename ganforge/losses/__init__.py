"""Building block: the adversarial losses, pure functions on D's raw logits
(:mod:`ganforge.losses.adversarial`, registered by name in ``LOSSES``)."""
