"""The drawing of each kind of data, one module per kind: ``micrograph`` (an image), ``stack``
(image stack), ``spectrum``, ``linescan``, ``spectrum_image`` and ``fourd`` (4D). Each takes a
``View`` and returns the drawn canvas (``canvas.Drawn``); ``preview`` picks which.
"""
