"""Partial unfreezing (``probe tune``): align a pair with chosen parts of each encoder trained end to
end, after Aczel & Wattenhofer, "Efficient Multimodal Alignment: To Freeze or Not to Freeze?".

:mod:`~probe.unfreezing.parts` names an encoder's parameter groups, :mod:`~probe.unfreezing.modules` makes a
loaded encoder a trainable module, :mod:`~probe.unfreezing.train` is the loop (checkpointed, resumable),
:mod:`~probe.unfreezing.pair` plans, scores and records one run.
"""
