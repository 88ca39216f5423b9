"""Optional parts of training: the levers users pull against overfitting, one module each.

Each part is instantiated from config (``conf/trainer/default.yaml``'s ``parts:``, set from
``params.yaml``'s ``train.*``) the way model families are, and trains only when it is on
(``active``). At its declared defaults (``DECLARED_DEFAULTS``, a class attribute) a part is off:
it leaves a run's identity, code included, so adding a part retrains nothing, and a part's code
enters the hash only of the runs that use it (``identity.py``). The step (``module.py``) calls the
hooks a part has, never a part by name:

* ``start_epoch(epoch, device)``: before each epoch (seeded random draws: a resumed run draws
  what an uninterrupted one does);
* ``transform(x)``: the training batch before the forward pass (augmentation);
* ``loss(logits, y)``: the per-example training loss in place of ``train.loss``'s (label smoothing);
* ``penalty(net)``: added to the minibatch's mean loss, reported as ``train_penalty`` (L2);
* ``before_step(optimizer, net)``: after the gradients, before the optimizer's update (decoupled
  weight decay).
"""
